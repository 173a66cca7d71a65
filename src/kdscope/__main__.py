"""`python -m kdscope ...` (what `torchrun ... -m kdscope audit ...` runs): the kdscope command line."""

from kdscope.cli.main import main

main()
