from keyhall.cli import main

main()
