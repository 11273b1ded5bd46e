//! The TCP echo of `meshctl echo --tcp-port`: every byte a client sends is sent back on the same
//! connection until the client closes its side.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The line printed once the TCP echo listens.
pub const TCP_READY_LINE: &str = "tcp echo listening on";

/// Serves TCP echo on `listener` forever.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        tokio::spawn(echo_connection(tcp));
    }
}

async fn echo_connection(mut tcp: TcpStream) {
    let (mut rd, mut wr) = tcp.split();
    if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
        let _ = wr.shutdown().await;
    }
}

/// Binds `addr`, prints [`TCP_READY_LINE`], serves forever.
pub async fn run(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("{TCP_READY_LINE} {}", listener.local_addr()?);
    serve(listener).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn echoes_bytes_back_until_the_client_half_closes() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l));
        let mut c = TcpStream::connect(addr).await.unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(&payload).await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, payload);
    }
}
