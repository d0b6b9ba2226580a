//! The SVG charts of `strata-bench run --plot DIR`, drawn with plotters from the series each
//! engine's run reports:
//! - `ingest.svg`: ingest throughput over ingest time, one line per engine; stalls show as
//!   dips;
//! - `latest-cdf.svg`: the "latest" latency CDF of every engine, on a log latency axis
//!   against "nines" (50%, 90%, 99%, 99.9%, ...), so the tail is as visible as the median.

use std::path::{Path, PathBuf};

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use crate::runner::EngineSeries;
use crate::{Error, Result};

/// File name of the ingest throughput chart.
pub const INGEST_CHART: &str = "ingest.svg";
/// File name of the latency CDF chart.
pub const LATEST_CDF_CHART: &str = "latest-cdf.svg";

const SIZE: (u32, u32) = (960, 540);
/// Largest "nines" value drawn: 99.999%.
const MAX_NINES: f64 = 5.0;

/// Draws both charts into `dir` (created if missing) and returns their paths.
pub fn write_charts(dir: &Path, series: &[EngineSeries]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create dir", dir, e))?;
    let ingest = dir.join(INGEST_CHART);
    draw_ingest(&ingest, series).map_err(|message| Error::Plot { path: ingest.clone(), message })?;
    let cdf = dir.join(LATEST_CDF_CHART);
    draw_latest_cdf(&cdf, series).map_err(|message| Error::Plot { path: cdf.clone(), message })?;
    Ok(vec![ingest, cdf])
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 4] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
    ];
    COLORS[i % COLORS.len()]
}

fn draw_ingest(path: &Path, series: &[EngineSeries]) -> std::result::Result<(), String> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_t = series.iter().flat_map(|s| s.ingest.iter().map(|p| p.t_secs)).fold(0.0, f64::max).max(1e-3);
    let max_rate = series
        .iter()
        .flat_map(|s| s.ingest.iter().map(|p| p.events_per_sec / 1e6))
        .fold(0.0, f64::max)
        .max(1e-3);
    let mut chart = ChartBuilder::on(&root)
        .caption("ingest throughput (batches of 1,000, WAL on, not fsynced)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_t * 1.02, 0.0..max_rate * 1.1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("ingest time (s)")
        .y_desc("million events/s (100 ms windows)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                s.ingest.iter().map(|p| (p.t_secs, p.events_per_sec / 1e6)),
                c.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.engine.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// "Nines" of a quantile: 0.9 -> 1, 0.99 -> 2, 1.0 -> the chart's top.
fn nines(quantile: f64) -> f64 {
    if quantile >= 1.0 {
        MAX_NINES
    } else {
        (-(1.0 - quantile).log10()).min(MAX_NINES)
    }
}

fn nines_label(n: &f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-n));
    let digits = format!("{percent:.3}");
    format!("{}%", digits.trim_end_matches('0').trim_end_matches('.'))
}

fn draw_latest_cdf(path: &Path, series: &[EngineSeries]) -> std::result::Result<(), String> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let points = || series.iter().flat_map(|s| s.latest_cdf.iter());
    let min_us = points().map(|p| p.latency_us).filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let min_us = if min_us.is_finite() { min_us * 0.8 } else { 1.0 };
    let max_us = points().map(|p| p.latency_us).fold(0.0, f64::max).max(min_us * 10.0) * 1.25;
    let mut chart = ChartBuilder::on(&root)
        .caption("latest-100 latency CDF", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((min_us..max_us).log_scale(), 0.0..MAX_NINES)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log scale)")
        .y_desc("fraction of queries at or below")
        .y_labels(6)
        .y_label_formatter(&nines_label)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(
                s.latest_cdf.iter().filter(|p| p.latency_us > 0.0).map(|p| (p.latency_us, nines(p.quantile))),
                c.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.engine.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::measure::CdfPoint;
    use crate::runner::IngestSample;

    #[test]
    fn charts_are_svg_files_naming_every_engine() {
        let dir = tempfile::tempdir().unwrap();
        let series: Vec<EngineSeries> = ["strata", "rocksdb"]
            .iter()
            .enumerate()
            .map(|(i, name)| EngineSeries {
                engine: name.to_string(),
                ingest: (1..50)
                    .map(|t| IngestSample { t_secs: t as f64 * 0.1, events_per_sec: 1e6 * (i + 1) as f64 })
                    .collect(),
                latest_cdf: vec![
                    CdfPoint { latency_us: 5.0 * (i + 1) as f64, quantile: 0.5 },
                    CdfPoint { latency_us: 20.0 * (i + 1) as f64, quantile: 0.99 },
                    CdfPoint { latency_us: 90.0 * (i + 1) as f64, quantile: 1.0 },
                ],
            })
            .collect();
        let paths = write_charts(&dir.path().join("charts"), &series).unwrap();
        assert_eq!(paths.len(), 2);
        for path in paths {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
            assert!(svg.contains("strata") && svg.contains("rocksdb"), "{}", path.display());
        }
        // Empty series still draw (a run whose phases were all skipped).
        write_charts(dir.path(), &[EngineSeries::default()]).unwrap();
        assert_eq!(nines_label(&2.0), "99%");
        assert_eq!(nines_label(&std::f64::consts::LOG10_2), "50%");
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
    }
}
