//! What `ossimportctl` writes about the tool itself: job file templates
//! (`template`), and the man pages and shell completions the packages
//! install (`generate`), all from the definitions the code runs on: the
//! clap commands of the three binaries and the key table
//! `job::config::keys`.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, roman};
use job::config::keys::{self, Key, Template};

use crate::cli::{Cli, Generated};
use crate::exit;

/// `ossimportctl template KIND`: the job file on stdout.
pub fn template(t: Template) -> ExitCode {
    print!("{}", t.render());
    std::process::ExitCode::from(exit::OK)
}

/// `ossimportctl generate man|completions DIR`.
pub fn generate(what: Generated, dir: &Path) -> ExitCode {
    let r = std::fs::create_dir_all(dir).and_then(|()| match what {
        Generated::Man => man_pages(dir),
        Generated::Completions => completions(dir),
    });
    match r {
        Ok(()) => std::process::ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("ossimportctl: writing into {}: {e}", dir.display());
            std::process::ExitCode::from(exit::RUNTIME)
        }
    }
}

fn man_pages(dir: &Path) -> std::io::Result<()> {
    let pages = [
        ("ossimportctl.1", Cli::command(), "1"),
        (
            "ossimportd.8",
            daemon::cli::Args::command().name("ossimportd"),
            "8",
        ),
        (
            "ossimport-agent.8",
            agent::cli::Args::command().name("ossimport-agent"),
            "8",
        ),
    ];
    let render = |file: String, cmd: clap::Command, section: &str| {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .section(section)
            .source(format!("ossimport {}", env!("CARGO_PKG_VERSION")))
            .manual("ossimport")
            .render(&mut out)?;
        std::fs::write(dir.join(file), out)
    };
    // ossimportctl(1) names a page per verb, ossimportctl-VERB(1), as git's do.
    for sub in Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
    {
        // clap takes static names (without its `string` feature); this runs
        // once per page in a short-lived process.
        let name: &'static str = format!("ossimportctl-{}", sub.get_name()).leak();
        render(format!("{name}.1"), sub.clone().name(name), "1")?;
    }
    for (file, cmd, section) in pages {
        render(file.to_string(), cmd, section)?;
    }
    std::fs::write(
        dir.join("ossimport-job.cfg.5"),
        config_page(
            "ossimport-job.cfg",
            "job file of ossimport (job.cfg, local_job.cfg)",
            "A job file names one migration: where the data comes from, where it goes and how it is \
             checked. It is the original ossimport's job.cfg: one key=value a line, # comments, \
             UTF-8 or GBK/GB18030, any line ends. A key left out or left empty takes its default; \
             an unknown key is an error naming the file and line, with the nearest known key. \
             `ossimportctl template KIND` writes one with every key.",
            keys::JOB,
        ),
    )?;
    std::fs::write(
        dir.join("ossimport-sys.properties.5"),
        config_page(
            "ossimport-sys.properties",
            "settings of the ossimport service (sys.properties)",
            "sys.properties holds what the original kept there: the work directory, the workers' \
             SSH login, and the limits of every executor; and ours for the distributed mode. It \
             sits next to job.cfg (conf/), or at /etc/ossimport/sys.properties with the packages. \
             One key=value a line, # comments.",
            keys::SYS,
        ),
    )
}

/// A section 5 page listing `keys` (the original's first, then ours).
fn config_page(name: &str, what: &str, description: &str, keys: &[Key]) -> Vec<u8> {
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            name.to_uppercase().as_str(),
            "5",
            "",
            &format!("ossimport {}", env!("CARGO_PKG_VERSION")),
            "ossimport",
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman(format!("{name} - {what}"))]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(description)]);
    for (title, ours) in [("KEYS", false), ("KEYS OF THIS IMPLEMENTATION", true)] {
        r.control("SH", [title]);
        for k in keys.iter().filter(|k| k.ours == ours) {
            r.control("TP", []);
            let mut head = vec![bold(k.name)];
            for a in k.aliases {
                head.push(roman(" or "));
                head.push(bold(*a));
            }
            r.text(head);
            let mut body = vec![roman(k.doc)];
            if !k.default.is_empty() {
                body.push(roman(" Default: "));
                body.push(bold(k.default));
            }
            r.text(body);
        }
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "ossimportctl(1), ossimportd(8), ossimport-agent(8), ossimport-job.cfg(5), ossimport-sys.properties(5)",
    )]);
    r.render().into_bytes()
}

fn completions(dir: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "ossimportctl.bash"),
        (Shell::Zsh, "_ossimportctl"),
        (Shell::Fish, "ossimportctl.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "ossimportctl", &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    Ok(())
}
