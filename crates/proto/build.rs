//! Compiles ../../proto/*.proto with a vendored protoc, so no system install
//! is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=../../proto");
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_build::configure()
        // For the admin port's server reflection (grpcurl without the
        // .proto files).
        .file_descriptor_set_path(out_dir.join("raftcache_descriptor.bin"))
        // A forwarded command's arguments decode as `Bytes` sharing the
        // received buffer, and are sent from the client's `Bytes` without a
        // copy.
        .bytes([".raftcache.raft.v1.Command.argv", ".raftcache.raft.v1.Command.op"])
        .compile_protos(&["../../proto/raft.proto", "../../proto/admin.proto"], &["../../proto"])?;
    Ok(())
}
