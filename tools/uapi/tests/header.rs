// SPDX-License-Identifier: GPL-2.0

//! The C header must compile on its own in a C program, and every size,
//! field offset and ioctl number must match the Rust mirror.

use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use movgem_uapi::*;

macro_rules! layout {
    ($($cty:literal => $rty:ty { $($field:ident),* }),* $(,)?) => {{
        let mut c = String::new();
        let mut want = Vec::new();
        $(
            c.push_str(&format!("\tprintf(\"{} %zu\\n\", sizeof(struct {}));\n", $cty, $cty));
            want.push(format!("{} {}", $cty, size_of::<$rty>()));
            $(
                c.push_str(&format!(
                    "\tprintf(\"{}.{} %zu\\n\", offsetof(struct {}, {}));\n",
                    $cty, stringify!($field), $cty, stringify!($field)
                ));
                want.push(format!("{}.{} {}", $cty, stringify!($field), offset_of!($rty, $field)));
            )*
        )*
        (c, want)
    }};
}

#[test]
fn c_header_matches_rust_mirror() {
    let (mut body, mut want) = layout!(
        "movgem_create" => Create { size, handle, flags },
        "movgem_close" => Close { handle, pad },
        "movgem_rw" => Rw { handle, pad, offset, size, data_ptr },
        "movgem_mmap" => Mmap { handle, pad, offset, size, addr_ptr },
        "movgem_set_domain" => SetDomain { handle, read_domains, write_domain, pad },
        "movgem_madvise" => Madvise { handle, madv, retained, pad },
        "movgem_exec_object" => ExecObject { handle, flags, offset },
        "movgem_execbuf" => Execbuf { objects_ptr, count, flags, duration_ns, op, value },
        "movgem_busy" => Busy { handle, busy },
        "movgem_wait" => Wait { handle, flags, timeout_ns },
        "movgem_pin" => Pin { handle, pad, offset },
        "movgem_vmap" => Vmap { handle, pad },
        "movgem_userptr" => Userptr { user_ptr, user_size, flags, handle },
        "movgem_info" => Info { objects, object_bytes, bound_objects, active_objects, gtt_size, gtt_used, cached_vmaps, runtime_suspended, requests },
    );
    let consts: &[(&str, u64)] = &[
        ("MOVGEM_IOCTL_USERPTR", IOCTL_USERPTR.into()),
        ("MOVGEM_DROP_UNBOUND", DROP_UNBOUND.into()),
        ("MOVGEM_DROP_BOUND", DROP_BOUND.into()),
        ("MOVGEM_DROP_ACTIVE", DROP_ACTIVE.into()),
        ("MOVGEM_DROP_PURGE", DROP_PURGE.into()),
        ("MOVGEM_DROP_WRITEBACK", DROP_WRITEBACK.into()),
        ("MOVGEM_DROP_ALL", DROP_ALL.into()),
        ("MOVGEM_IOCTL_CREATE", IOCTL_CREATE.into()),
        ("MOVGEM_IOCTL_CLOSE", IOCTL_CLOSE.into()),
        ("MOVGEM_IOCTL_PWRITE", IOCTL_PWRITE.into()),
        ("MOVGEM_IOCTL_PREAD", IOCTL_PREAD.into()),
        ("MOVGEM_IOCTL_MMAP", IOCTL_MMAP.into()),
        ("MOVGEM_IOCTL_SET_DOMAIN", IOCTL_SET_DOMAIN.into()),
        ("MOVGEM_IOCTL_MADVISE", IOCTL_MADVISE.into()),
        ("MOVGEM_IOCTL_EXECBUF", IOCTL_EXECBUF.into()),
        ("MOVGEM_IOCTL_BUSY", IOCTL_BUSY.into()),
        ("MOVGEM_IOCTL_WAIT", IOCTL_WAIT.into()),
        ("MOVGEM_IOCTL_PIN", IOCTL_PIN.into()),
        ("MOVGEM_IOCTL_UNPIN", IOCTL_UNPIN.into()),
        ("MOVGEM_IOCTL_VMAP", IOCTL_VMAP.into()),
        ("MOVGEM_IOCTL_VUNMAP", IOCTL_VUNMAP.into()),
        ("MOVGEM_IOCTL_GET_INFO", IOCTL_GET_INFO.into()),
        ("MOVGEM_MAX_OBJECT_SIZE", MAX_OBJECT_SIZE),
        ("MOVGEM_MAX_EXEC_OBJECTS", MAX_EXEC_OBJECTS.into()),
        ("MOVGEM_DOMAIN_CPU", DOMAIN_CPU.into()),
        ("MOVGEM_DOMAIN_GTT", DOMAIN_GTT.into()),
        ("MOVGEM_MADV_WILLNEED", MADV_WILLNEED.into()),
        ("MOVGEM_MADV_DONTNEED", MADV_DONTNEED.into()),
        ("MOVGEM_EXEC_OBJECT_WRITE", EXEC_OBJECT_WRITE.into()),
        ("MOVGEM_OP_NOP", OP_NOP.into()),
        ("MOVGEM_OP_FILL", OP_FILL.into()),
        ("MOVGEM_OP_CHECK", OP_CHECK.into()),
        ("MOVGEM_EXEC_HANG", EXEC_HANG.into()),
    ];
    for (name, value) in consts {
        body.push_str(&format!(
            "\tprintf(\"{name} %llu\\n\", (unsigned long long)({name}));\n"
        ));
        want.push(format!("{name} {value}"));
    }

    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../include/uapi");
    let dir = std::env::temp_dir().join(format!("movgem-uapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("check.c");
    let exe = dir.join("check");
    std::fs::write(
        &src,
        format!("#include <stddef.h>\n#include <stdio.h>\n#include <movgem.h>\n\nint main(void)\n{{\n{body}\treturn 0;\n}}\n"),
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run the C compiler");
    assert!(
        out.status.success(),
        "header does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success());
    let got: Vec<String> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(got, want);
}
