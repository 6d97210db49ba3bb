//! tcp (in progress)
