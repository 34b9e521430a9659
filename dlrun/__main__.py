from dlrun.cli.commands import main

main()
