from gateway.radio.service import main

main()
