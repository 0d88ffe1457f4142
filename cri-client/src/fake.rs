//! An in-memory CRI runtime for tests and harnesses. (Being written.)
