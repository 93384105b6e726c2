from varscore.cli import main

main()
