//! Names the commit in `docplane --version`: `DOCPLANE_BUILD_COMMIT` from the environment (a build
//! without `.git`, e.g. a Docker context, passes it), else `git rev-parse`, else "commit unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=DOCPLANE_BUILD_COMMIT");
    let commit = match std::env::var("DOCPLANE_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => format!("commit {}", c.trim()),
        _ => match git(&["rev-parse", "--short=12", "HEAD"]) {
            Some(hash) => {
                let date = git(&["show", "-s", "--format=%cs", "HEAD"]).unwrap_or_default();
                // Rebuild when HEAD moves: HEAD itself, and the branch it names.
                // (Only files that exist: a missing one would rerun this script on every build.)
                let mut watch = Vec::new();
                if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                    watch.push(format!("{dir}/HEAD"));
                }
                if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
                    watch.push(format!("{common}/packed-refs"));
                    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                        watch.push(format!("{common}/{reference}"));
                    }
                }
                for path in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
                    println!("cargo:rerun-if-changed={path}");
                }
                format!("commit {hash} {date}").trim_end().to_string()
            }
            None => "commit unknown".to_string(),
        },
    };
    println!("cargo:rustc-env=DOCPLANE_BUILD_COMMIT={commit}");
}
