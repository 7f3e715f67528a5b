//! The volume metadata (being written).
