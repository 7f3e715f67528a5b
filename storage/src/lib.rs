//! The replicated volume (DRBD-like, exported over NBD) and, later, the two-way directory sync.
