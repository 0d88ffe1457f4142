//! Client side of the runtime's streaming server (exec, attach, port-forward). (Being written.)
