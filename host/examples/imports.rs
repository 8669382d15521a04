fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).unwrap();
    let mut cfg = wasmtime::Config::new();
    cfg.wasm_component_model(true);
    let engine = wasmtime::Engine::new(&cfg)?;
    let c = wasmtime::component::Component::from_file(&engine, path)?;
    for (name, _) in c.component_type().imports(&engine) {
        println!("import {name}");
    }
    for (name, _) in c.component_type().exports(&engine) {
        println!("export {name}");
    }
    Ok(())
}
