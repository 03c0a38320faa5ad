from gateway.group_owner.service import main

main()
