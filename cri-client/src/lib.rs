//! Complete Kubernetes CRI v1 client (RuntimeService and ImageService) over gRPC, with a fake runtime for tests
