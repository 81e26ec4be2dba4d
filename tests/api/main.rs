//! Integration tests (written next).
