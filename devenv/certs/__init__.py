"""devenv's own local certificate authority and the leaf certificates of the HTTPS proxy
(`DEVENV_HTTPS`): `ca.py` creates, checks and renews them, `trust.py` adds the CA to the
system store and the browsers' NSS databases and takes it out again."""
