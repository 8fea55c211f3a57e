//! The comparison as an SVG bar chart: requests/s per configuration, one bar
//! per server.

use std::io;
use std::path::Path;

use plotters::prelude::*;

use crate::compare::Row;

/// Draws grouped bars of median requests/s: a group per (workload, workers),
/// a bar per server.
///
/// # Errors
/// If the file cannot be written.
pub fn bars(path: &Path, rows: &[Row]) -> io::Result<()> {
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows {
        let name = format!(
            "{}, {} worker{}",
            r.workload.name(),
            r.workers,
            if r.workers == 1 { "" } else { "s" }
        );
        match groups.iter_mut().find(|(g, _)| *g == name) {
            Some((_, members)) => members.push(r),
            None => groups.push((name, vec![r])),
        }
    }
    let servers: Vec<&str> = {
        let mut s: Vec<&str> = rows.iter().map(|r| r.server).collect();
        s.dedup();
        s.sort_unstable();
        s.dedup();
        s
    };
    // Headroom above the tallest bar for the legend.
    let top = rows.iter().map(|r| r.m.rps).fold(0.0, f64::max).max(1.0) * 1.45;
    let width = 220 * groups.len().max(1) as u32 + 120;
    let root = SVGBackend::new(path, (width, 420)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("pollring compare: requests/s (median)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..groups.len() as f64, 0.0..top)?;
        let names: Vec<String> = groups.iter().map(|(g, _)| g.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.01 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("requests/s")
            .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .draw()?;
        let palette = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(148, 103, 189),
        ];
        let slot = 0.8 / servers.len().max(1) as f64;
        for (si, server) in servers.iter().enumerate() {
            let color = palette[si % palette.len()];
            let bars = groups.iter().enumerate().filter_map(|(gi, (_, members))| {
                let row = members.iter().find(|r| r.server == *server)?;
                let x0 = gi as f64 + 0.1 + si as f64 * slot;
                Some(Rectangle::new([(x0, 0.0), (x0 + slot * 0.9, row.m.rps)], color.filled()))
            });
            chart.draw_series(bars)?.label(*server).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
            });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| io::Error::other(e.to_string()))
}
