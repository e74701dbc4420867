from edgenas.entry import main

main()
