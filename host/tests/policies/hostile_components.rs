//! WebAssembly components built to hurt the operator rather than to decide: costly to compile,
//! too many core instances, a result too large to lift. The engine tests (`hostile_tenant`), the
//! cluster tests (`hostile`) and the hostile-tenant benchmark attack with the same bytes, so
//! what the tests prove refused is what the benchmark measures. Self-contained, so that the
//! other binaries can include it with `#[path]`.

#![allow(dead_code)] // each binary uses its own subset

/// A component of about `kib` KiB, costly to compile: one core module of many functions, each a
/// long dependency chain of arithmetic on its parameter (nothing of it can be optimised away),
/// written as binary directly. (Not a trigger policy: once compiled it is `PolicyWrongWorld`.)
pub fn compile_heavy(kib: usize) -> Vec<u8> {
    // (func (param i32) (result i32) ...): one long dependency chain on the parameter.
    let mut body = vec![0];
    for i in 0..4000usize {
        let k = (i % 64) as u8;
        body.extend_from_slice(&[0x20, 0, 0x41, k, 0x6a, 0x20, 0, 0x6c, 0x21, 0]);
    }
    body.extend_from_slice(&[0x20, 0, 0x0b]);
    let functions = ((kib << 10) / (body.len() + 3)).max(1);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 1, 0x7f, 1, 0x7f], &mut module);
    let mut funcs = Vec::new();
    leb(functions, &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, functions));
    section(3, &funcs, &mut module);
    let mut code = Vec::new();
    leb(functions, &mut code);
    for _ in 0..functions {
        leb(body.len(), &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}

/// [`compile_heavy`] with `salt` in a custom section: another digest of the same code, so that
/// each rewrite of a module is a new policy to load.
pub fn compile_heavy_salted(kib: usize, salt: u64) -> Vec<u8> {
    let mut component = compile_heavy(kib);
    let mut custom = Vec::new();
    leb(4, &mut custom);
    custom.extend_from_slice(b"salt");
    custom.extend_from_slice(&salt.to_le_bytes());
    section(0, &custom, &mut component);
    component
}

/// `n` as unsigned LEB128, the binary format's integers.
fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A section of the binary format: its id, its length, its body.
fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len(), out);
    out.extend_from_slice(body);
}

/// A component that instantiates an empty core module `instances` times.
pub fn many_instances(instances: usize) -> Vec<u8> {
    let mut text = String::from("(component (core module $m)");
    for _ in 0..instances {
        text.push_str(" (core instance (instantiate $m))");
    }
    text.push(')');
    wat::parse_str(&text).expect("parses")
}

/// A trigger policy (hand-written, the contract's types spelled out) whose `decide` answers
/// `count` empty reasons from a memory of `pages` pages: 16 bytes each in the guest, 48 on the
/// host once lifted.
pub fn many_reasons(count: u32, pages: u32) -> Vec<u8> {
    let text = r#"(component
  (core module $m
    (memory (export "memory") PAGES)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 64)
    (func (export "decide") (param i32) (result i32)
      (i32.store (i32.const 8) (i32.const 1024))
      (i32.store (i32.const 12) (i32.const COUNT))
      i32.const 0))
  (core instance $i (instantiate $m))
  (type $strategy-def (enum "manual" "now" "once" "done"))
  (export $strategy "strategy" (type $strategy-def))
  (type $reason-def (record (field "code" string) (field "message" string)))
  (export $reason "reason" (type $reason-def))
  (type $outcome-def (enum "succeeded" "failed"))
  (export $outcome "job-outcome" (type $outcome-def))
  (type $event-def (variant (case "created") (case "spec-changed") (case "strategy-changed" $strategy) (case "config-changed") (case "job-finished" $outcome) (case "resync")))
  (export $event "trigger-event" (type $event-def))
  (type $map (list (tuple string string)))
  (type $qjob-def (record (field "name" string) (field "namespace" string) (field "uid" string) (field "generation" s64) (field "labels" $map) (field "annotations" $map) (field "strategy" $strategy) (field "update-on-config-change" bool) (field "completed" bool) (field "run-count" u64) (field "spec-json" string)))
  (export $qjob "quarks-job" (type $qjob-def))
  (type $input-def (record (field "event" $event) (field "quarks-job" $qjob) (field "config-digest-now" (option string)) (field "config-digest-last-run" (option string)) (field "missing-config" (list string)) (field "run-active" bool)))
  (export $input "trigger-input" (type $input-def))
  (type $decision-def (record (field "run" bool) (field "write-strategy" (option $strategy)) (field "reasons" (list $reason))))
  (export $decision "trigger-decision" (type $decision-def))
  (type $decide (func (param "input" $input) (result (result $decision (error $reason)))))
  (func $decide (type $decide) (canon lift (core func $i "decide") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (instance $policy (export "decide" (func $decide)))
  (export "quarks:policy/trigger-policy@0.1.0" (instance $policy))
)
"#;
    wat::parse_str(
        text.replace("COUNT", &count.to_string())
            .replace("PAGES", &pages.to_string()),
    )
    .expect("the component parses")
}
