//! include/edgetune.h is what cbindgen generates from src/ (capi/cbindgen.toml): a function,
//! struct field or doc comment changed in Rust and not in the header fails here.
//! `EDGETUNE_BLESS=1 cargo test -p edgetune-c --test header` rewrites the header.

use std::path::Path;

#[test]
fn the_committed_header_is_generated_from_the_rust_signatures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("capi/cbindgen.toml");
    let bindings =
        cbindgen::Builder::new().with_crate(dir).with_config(config).generate().expect("cbindgen reads capi/src");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let path = dir.join("include/edgetune.h");
    if std::env::var_os("EDGETUNE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/edgetune.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from what cbindgen generates from capi/src; rerun with EDGETUNE_BLESS=1 and review the diff",
        path.display()
    );
    for name in
        ["et_model_load", "et_session_run", "et_trainer_step", "et_trainer_export", "et_finetune", "et_last_error"]
    {
        assert!(generated.contains(&format!(" {name}(")), "{name} missing from the header");
    }
}
