"""The demo: the whole product on this machine, on realistic traffic, in one command."""
