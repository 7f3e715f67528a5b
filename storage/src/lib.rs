//! The replicated volume (DRBD-like, exported over NBD) and the two-way directory sync.
//!
//! Empty until their issues land; the crate exists so the workspace has its final shape.
