fn main() {
    println!("cargo:rerun-if-changed=csrc/numfmt.c");
    cc::Build::new().file("csrc/numfmt.c").opt_level(2).compile("raftcache_numfmt");
}
