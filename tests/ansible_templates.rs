//! Templates ported from an Ansible role render byte for byte as Ansible renders them.
//! The expected files were produced by Ansible itself (tests/fixtures/ansible/generate.sh,
//! versions in expected/VERSIONS), never by strata.

use std::path::Path;

#[test]
fn ported_ansible_templates_render_as_ansible_does() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ansible");
    let repo = strata::config::Repo::load(&root.join("repo"), None).expect("fixture repo loads");
    let rendered = strata::render::render_all(&repo).expect("fixture repo renders");
    let node = &rendered.nodes[0];
    let mut compared = 0;
    for r in &node.resources {
        if let strata::model::Resource::File(f) = r {
            let name = Path::new(&f.dest).file_name().unwrap().to_str().unwrap();
            let want = std::fs::read_to_string(root.join("expected").join(name))
                .unwrap_or_else(|e| panic!("expected/{name}: {e}"));
            if f.content != want {
                let diff = similar::TextDiff::from_lines(&want, &f.content)
                    .unified_diff()
                    .header("ansible", "strata")
                    .to_string();
                panic!("{name} differs from Ansible's output:\n{diff}");
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 4);
}
