use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// A sink that records each `write` call separately, to see how records were batched.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

impl Calls {
    fn writes(&self) -> Vec<Vec<u8>> {
        self.0.lock().expect("calls lock").clone()
    }
    fn text(&self) -> String {
        String::from_utf8(self.writes().concat()).expect("utf-8")
    }
}

impl Write for Calls {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("calls lock").push(data.to_vec());
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink whose writes all fail, as stdout does once its reader has gone.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::BrokenPipe, "reader gone"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn record(i: usize) -> String {
    format!("record {i}\n")
}

#[test]
fn records_wait_for_a_flush_and_leave_in_one_write_in_order() {
    let calls = Calls::default();
    let batch = Batch::new(Box::new(calls.clone()));
    for i in 0..100 {
        batch.append(record(i).as_bytes());
    }
    assert!(
        calls.writes().is_empty(),
        "nothing is written before a flush"
    );
    batch.flush();
    let writes = calls.writes();
    assert_eq!(writes.len(), 1, "one write for the whole batch");
    let expected: String = (0..100).map(record).collect();
    assert_eq!(calls.text(), expected);
    batch.flush();
    assert_eq!(calls.writes().len(), 1, "an empty buffer writes nothing");
}

#[test]
fn a_full_buffer_is_written_by_the_appending_thread() {
    let calls = Calls::default();
    let batch = Batch::new(Box::new(calls.clone()));
    let line = format!("{}\n", "x".repeat(1023));
    let records = HIGH_WATER / line.len();
    for _ in 0..records {
        batch.append(line.as_bytes());
    }
    assert_eq!(
        calls.writes().len(),
        1,
        "the record that reached the mark wrote the buffer"
    );
    assert_eq!(calls.text().len(), records * line.len());
    batch.append(b"after\n");
    assert_eq!(calls.writes().len(), 1, "the next record waits again");
}

#[test]
fn the_flusher_writes_records_without_being_asked() {
    let calls = Calls::default();
    let batch = Batch::new(Box::new(calls.clone()));
    batch
        .start_flusher(Duration::from_millis(10))
        .expect("flusher");
    batch.append(b"first\n");
    batch.append(b"second\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.text() != "first\nsecond\n" {
        assert!(
            Instant::now() < deadline,
            "flusher never wrote: {:?}",
            calls.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // It keeps working after the buffer emptied once.
    batch.append(b"third\n");
    while calls.text() != "first\nsecond\nthird\n" {
        assert!(
            Instant::now() < deadline,
            "flusher stopped: {:?}",
            calls.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn records_from_many_threads_all_arrive_each_whole() {
    let calls = Calls::default();
    let batch = Batch::new(Box::new(calls.clone()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let batch = batch.clone();
            std::thread::spawn(move || {
                for i in 0..5000 {
                    batch.append(format!("t{t} {i}\n").as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    batch.flush();
    let text = calls.text();
    for t in 0..4 {
        let mine: Vec<usize> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("t{t} ")))
            .map(|n| n.parse().expect("whole record"))
            .collect();
        assert_eq!(mine, (0..5000).collect::<Vec<_>>(), "thread {t} in order");
    }
    assert!(
        calls.writes().len() > 1,
        "high water reached: written in several batches"
    );
}

#[test]
fn a_failing_sink_drops_the_batch_and_keeps_going() {
    let batch = Batch::new(Box::new(Broken));
    batch.append(b"lost\n");
    batch.flush();
    // The buffer was emptied, not kept growing for a sink that will never take it.
    assert!(batch.pending.lock().expect("pending").is_empty());
}

#[test]
fn the_subscriber_writes_through_the_batch() {
    let calls = Calls::default();
    let batch = Batch::new(Box::new(calls.clone()));
    let (subscriber, _handle) = crate::telemetry::build_subscriber(
        crate::telemetry::LogFormat::Text,
        "info",
        BatchWriter(batch.clone()),
        false,
    )
    .expect("subscriber");
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(n = 1, "one");
        tracing::info!(n = 2, "two");
    });
    assert!(calls.writes().is_empty());
    batch.flush();
    let text = calls.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with("one n=1"), "{text}");
    assert!(lines[1].ends_with("two n=2"), "{text}");
}
