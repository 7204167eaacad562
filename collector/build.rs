//! Checks that the dashboard's front-end dependency (uPlot, pinned in
//! web/package.json and web/package-lock.json) is installed, so that a
//! missing `npm ci` is one clear message instead of an include error.

use std::path::Path;

fn main() {
    let dist = Path::new("web/node_modules/uplot/dist");
    for file in ["uPlot.iife.min.js", "uPlot.min.css"] {
        let path = dist.join(file);
        if !path.exists() {
            panic!(
                "{} is missing: run `npm ci --prefix collector/web` (scripts/demo and scripts/test do)",
                path.display()
            );
        }
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=web/package-lock.json");
}
