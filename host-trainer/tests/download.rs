//! `download` against a local HTTP server on 127.0.0.1: a good archive, a wrong checksum
//! and a connection dropped half way. Nothing is left under the final name on failure.

mod fixtures;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::thread;

use host_trainer::data::{self, Wanted, download};

/// Serves `body` for every request, one connection at a time; `/cut/...` announces the whole
/// length but closes after half of it. Returns the base URL. The thread stops after
/// `connections` requests.
fn serve(body: Vec<u8>, connections: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.unwrap();
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                    break;
                }
            }
            let cut = request_line.contains("/cut/");
            let sent = if cut {
                &body[..body.len() / 2]
            } else {
                &body[..]
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(sent);
            let _ = stream.flush();
        }
    });
    format!("http://{address}")
}

fn small_archive(dir: &Path) -> Vec<u8> {
    let batches = fixtures::write_binary_layout(dir);
    let archive = dir.join("cifar-10-binary.tar.gz");
    fixtures::pack(&batches, "cifar-10-batches-bin", &archive, true);
    std::fs::read(archive).unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(bytes))
}

#[test]
fn a_good_download_is_verified_and_loadable() {
    let source = tempfile::tempdir().unwrap();
    let body = small_archive(source.path());
    let base = serve(body.clone(), 1);
    let target = tempfile::tempdir().unwrap();
    let url = format!("{base}/files/cifar-10-binary.tar.gz");
    let written = download::download(&url, target.path(), Some(&md5_hex(&body)), false).unwrap();
    assert_eq!(written, target.path().join("cifar-10-binary.tar.gz"));
    assert_eq!(std::fs::read(&written).unwrap(), body);
    let cifar = data::load(&written, Wanted::Both).unwrap();
    assert_eq!(cifar.train.len(), 50);
    assert_eq!(
        std::fs::read_dir(target.path()).unwrap().count(),
        1,
        "a temporary file was left"
    );
}

#[test]
fn a_wrong_checksum_writes_nothing() {
    let source = tempfile::tempdir().unwrap();
    let body = small_archive(source.path());
    let base = serve(body, 1);
    let target = tempfile::tempdir().unwrap();
    let url = format!("{base}/files/cifar-10-binary.tar.gz");
    let err =
        download::download(&url, target.path(), Some(download::OFFICIAL_MD5), false).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("MD5") && text.contains(download::OFFICIAL_MD5),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
}

#[test]
fn a_dropped_connection_writes_nothing_and_keeps_an_older_file() {
    let source = tempfile::tempdir().unwrap();
    let body = small_archive(source.path());
    let base = serve(body.clone(), 1);
    let target = tempfile::tempdir().unwrap();
    let previous = target.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&previous, b"an earlier, complete download").unwrap();
    let url = format!("{base}/cut/cifar-10-binary.tar.gz");
    let err = download::download(&url, target.path(), Some(&md5_hex(&body)), false).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("cut/cifar-10-binary.tar.gz"), "{text}");
    assert_eq!(
        std::fs::read(&previous).unwrap(),
        b"an earlier, complete download"
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 1);
}

#[test]
fn the_command_line_downloads_into_the_given_folder() {
    let source = tempfile::tempdir().unwrap();
    let body = small_archive(source.path());
    let base = serve(body.clone(), 1);
    let target = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_host-trainer"))
        .args([
            "download",
            "--quiet",
            "--url",
            &format!("{base}/x/cifar-10-binary.tar.gz"),
            "--dir",
            target.path().to_str().unwrap(),
            "--md5",
            &md5_hex(&body),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(target.path().join("cifar-10-binary.tar.gz")).unwrap(),
        body
    );
}
