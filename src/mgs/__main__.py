from mgs.cli import console_main

console_main()
