//! TCP echo server, one thread per connection.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// What to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (default all IPv4 addresses).
    pub bind: IpAddr,
    /// TCP port (0 picks a free one).
    pub port: u16,
    /// When set, every connection first receives `hello from <banner>\n`.
    pub banner: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            banner: None,
        }
    }
}

/// The name a banner carries: `$POD_NAME`, else the host name.
pub fn banner_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into())
        })
}

/// A bound echo server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    banner: Option<String>,
}

impl Server {
    /// Binds the listening socket.
    pub fn bind(opts: &ServeOptions) -> io::Result<Server> {
        let listener = TcpListener::bind(SocketAddr::new(opts.bind, opts.port))?;
        Ok(Server {
            listener,
            banner: opts.banner.clone(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever, each served on its own thread.
    pub fn run(self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let banner = self.banner.clone();
                    thread::spawn(move || {
                        if let Err(e) = echo(stream, banner.as_deref()) {
                            eprintln!("connection from {peer}: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Typically EMFILE under load: back off instead of spinning.
                    eprintln!("accept: {e}");
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

fn echo(mut stream: TcpStream, banner: Option<&str>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(name) = banner {
        stream.write_all(format!("hello from {name}\n").as_bytes())?;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n])?;
    }
    stream.shutdown(Shutdown::Write)
}
