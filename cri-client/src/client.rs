//! The high-level CRI client. (Being written.)
