//! pollring
