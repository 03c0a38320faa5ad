from gateway.border_router.service import main

main()
