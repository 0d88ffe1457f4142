//! Reader for CRI container log files. (Being written.)
