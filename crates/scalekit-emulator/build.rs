//! Compiles `proto/` into Rust with `protox` (a pure-Rust protobuf compiler, so no system
//! `protoc`) and `tonic-prost-build`: the gRPC server and client of
//! `scalekit.v1.auth.AuthService`, Scalekit's `ErrorInfo` and `google.rpc.Status`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "proto/scalekit/v1/auth/auth.proto",
        "proto/scalekit/v1/errdetails/errdetails.proto",
        "proto/google/rpc/status.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The client is for tests and callers that bring their own channel; the library does
        // not pull tonic's transport.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
