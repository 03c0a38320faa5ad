from gateway.demo.run import main

main()
