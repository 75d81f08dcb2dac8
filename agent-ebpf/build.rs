//! Compiles src/bpf/warden.bpf.c with clang into $OUT_DIR/warden.bpf.o.
//!
//! clang -target bpf does not search the host's multiarch include directory,
//! where <asm/types.h> lives on Debian, so it is added explicitly.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = PathBuf::from("src/bpf/warden.bpf.c");
    let header = PathBuf::from("src/bpf/warden.h");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=BPF_CLANG");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("warden.bpf.o");
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang".into());
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => panic!("mcp-warden-ebpf: no multiarch include path known for {other}"),
    };

    let status = Command::new(&clang)
        .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-Isrc/bpf")
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("mcp-warden-ebpf: cannot run `{clang}` ({e}); install clang and libbpf-dev (see README)")
        });
    assert!(
        status.success(),
        "mcp-warden-ebpf: clang failed to compile {}",
        src.display()
    );
}
