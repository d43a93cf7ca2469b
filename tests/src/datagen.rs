//! A deterministic generator of realistic metrics, for benchmarks of storage
//! formats, and an OpenMetrics writer for importing the same data into
//! Prometheus (`promtool tsdb create-blocks-from openmetrics`).
//!
//! The data imitates what Prometheus scrapes from hosts: every host is two
//! targets, `job="node"` (node_exporter-like: CPU seconds with 2 decimals,
//! memory and filesystem bytes, network and disk counters, disk times as
//! `float64(ms) * 0.001`, temperatures with 1 decimal, load averages, collector durations in nanoseconds as seconds,
//! info series of value 1) and `job="api"` (request counters, a classic
//! latency histogram whose `_sum` is a full-precision float, process and Go
//! runtime gauges, a summary, a ratio). The api process restarts about once
//! in two days, which resets its counters.
//!
//! All series of one target share their timestamps, as in a real scrape: a
//! phase per target, 0-2 ms of lateness per scrape, 3-10 ms in 9% of scrapes
//! and 10-210 ms in 1%, and Prometheus' alignment of timestamps that are
//! within 2 ms of the expected one (a real Prometheus 2.42 scraping two
//! targets on an idle host had every interval exactly 15 s). No stale
//! markers: OpenMetrics text cannot carry them.

use std::collections::BTreeMap;
use std::io::{self, Write};

use storage::{Label, Labels, METRIC_NAME, Sample, Series};

/// What to generate. Series are generated target by target (about 560 series
/// per host), so `series` is cut at the last target's series list.
#[derive(Clone, Debug)]
pub struct DataSpec {
    pub series: usize,
    pub duration_ms: i64,
    pub interval_ms: i64,
    pub start_ms: i64,
    pub seed: u64,
}

/// Generates the series of `spec`, each with labels sorted (`__name__`,
/// `instance`, `job`, and family labels) and samples in time order.
pub fn realistic(spec: &DataSpec) -> Vec<Series> {
    let mut out = Vec::with_capacity(spec.series);
    let mut host = 0;
    while out.len() < spec.series {
        host += 1;
        for job in [Job::Node, Job::Api] {
            // Independent streams: splitmix64 states that differ by a small
            // multiple of its increment would repeat each other's values.
            let seed = Rng(spec.seed ^ Rng(((host as u64) << 8) | job as u64).next()).next();
            let mut g = Target::new(spec, host, job, seed);
            match job {
                Job::Node => g.node(),
                Job::Api => g.api(),
            }
            out.append(&mut g.series);
            if out.len() >= spec.series {
                break;
            }
        }
    }
    out.truncate(spec.series);
    out
}

#[derive(Clone, Copy)]
enum Job {
    Node = 1,
    Api = 2,
}

/// splitmix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// A count with mean `mean` and some spread, never negative.
    fn count(&mut self, mean: f64) -> i64 {
        let noisy = mean * (0.6 + 0.8 * self.unit());
        (noisy + self.unit()).floor().max(0.0) as i64
    }
}

/// One scrape target: its labels, shared timestamps and the series so far.
struct Target {
    rng: Rng,
    instance: String,
    job: &'static str,
    times: Vec<i64>,
    /// Seconds between consecutive scrapes (index i: from i-1 to i).
    dts: Vec<f64>,
    /// Sample index at which the process restarts (counters reset).
    restart: Option<usize>,
    series: Vec<Series>,
}

impl Target {
    fn new(spec: &DataSpec, host: usize, job: Job, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let interval = spec.interval_ms.max(1);
        let phase = rng.below(interval as u64) as i64;
        let mut times = Vec::new();
        let mut prev: Option<i64> = None;
        let mut k = 0;
        loop {
            let nominal = spec.start_ms + phase + k * interval;
            if nominal >= spec.start_ms + spec.duration_ms {
                break;
            }
            k += 1;
            // Lateness: mostly within Prometheus' 2 ms tolerance, sometimes
            // a few ms more, rarely much more.
            let late = match rng.below(100) {
                0 => 10 + rng.below(200) as i64,
                1..=9 => 3 + rng.below(8) as i64,
                _ => rng.below(3) as i64,
            };
            let mut t = nominal + late;
            // Prometheus' timestamp alignment (2 ms tolerance).
            if let Some(p) = prev {
                if (t - (p + interval)).abs() <= 2 {
                    t = p + interval;
                }
                if t <= p {
                    continue;
                }
            }
            times.push(t);
            prev = Some(t);
        }
        let mut dts = Vec::with_capacity(times.len());
        for (i, t) in times.iter().enumerate() {
            let d = if i == 0 { interval } else { t - times[i - 1] };
            dts.push(d as f64 / 1000.0);
        }
        // About one restart per two days.
        let restart = match job {
            Job::Api if !times.is_empty() => {
                let two_days = 2 * 86_400_000 / interval;
                let r = rng.below(two_days.max(1) as u64) as usize;
                (r < times.len()).then_some(r.max(1))
            }
            _ => None,
        };
        let (port, job) = match job {
            Job::Node => (9100, "node"),
            Job::Api => (8080, "api"),
        };
        Self {
            rng,
            instance: format!("host-{host:03}:{port}"),
            job,
            times,
            dts,
            restart,
            series: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, labels: &[(&str, &str)], values: Vec<f64>) {
        let mut l = vec![
            Label::new(METRIC_NAME, name),
            Label::new("instance", self.instance.as_str()),
            Label::new("job", self.job),
        ];
        l.extend(labels.iter().map(|(n, v)| Label::new(*n, *v)));
        let labels = Labels::from_unsorted(l).expect("generated labels are valid");
        let samples = self
            .times
            .iter()
            .zip(values)
            .map(|(&t, v)| Sample::new(t, v))
            .collect();
        self.series.push(Series { labels, samples });
    }

    /// A counter of integer units shown at `scale` decimals, growing by
    /// about `rate` units per second.
    fn counter(&mut self, rate: f64, scale: i32, resets: bool) -> Vec<f64> {
        let div = 10f64.powi(scale);
        let mut acc = self.rng.below(1_000_000) as i64;
        let mut v = Vec::with_capacity(self.times.len());
        for i in 0..self.times.len() {
            if resets && Some(i) == self.restart {
                acc = 0;
            }
            acc += self.rng.count(rate * self.dts[i]);
            v.push(acc as f64 / div);
        }
        v
    }

    /// A counter that almost never moves (errors, drops).
    fn rare_counter(&mut self, per_day: f64) -> Vec<f64> {
        let mut acc = self.rng.below(3) as i64;
        let mut v = Vec::with_capacity(self.times.len());
        for i in 0..self.times.len() {
            if self.rng.unit() < per_day * self.dts[i] / 86_400.0 {
                acc += 1 + self.rng.below(3) as i64;
            }
            v.push(acc as f64);
        }
        v
    }

    /// A mean-reverting walk of integer units shown as `units * mult / 10^scale`.
    fn gauge(&mut self, mean: i64, step: i64, mult: i64, scale: i32) -> Vec<f64> {
        let div = 10f64.powi(scale);
        let mut acc = mean;
        let mut v = Vec::with_capacity(self.times.len());
        for _ in 0..self.times.len() {
            let pull = (mean - acc) / 20;
            acc += pull + self.rng.below(2 * step as u64 + 1) as i64 - step;
            acc = acc.max(0);
            v.push((acc * mult) as f64 / div);
        }
        v
    }

    /// Durations measured in nanoseconds, exposed in seconds.
    fn durations(&mut self, mean_ns: f64) -> Vec<f64> {
        (0..self.times.len())
            .map(|_| (mean_ns * (0.3 + 1.4 * self.rng.unit())).round() / 1e9)
            .collect()
    }

    fn constant(&self, v: f64) -> Vec<f64> {
        vec![v; self.times.len()]
    }

    /// Constant series: one per label value.
    fn constants(&mut self, name: &str, label: &str, values: &[&str], v: f64) {
        for x in values {
            self.push(name, &[(label, x)], self.constant(v));
        }
    }

    /// node_exporter-like, about 390 series: 60% constant over 15 minutes,
    /// 30% moving at every scrape (a real node_exporter 1.5 on an idle
    /// machine: 67% and 19%).
    fn node(&mut self) {
        self.push("up", &[], self.constant(1.0));
        self.push(
            "node_uname_info",
            &[
                ("machine", "x86_64"),
                ("release", "6.1.0-13-amd64"),
                ("sysname", "Linux"),
            ],
            self.constant(1.0),
        );
        self.push(
            "node_os_info",
            &[("id", "debian"), ("version_id", "12")],
            self.constant(1.0),
        );
        self.push(
            "node_exporter_build_info",
            &[("version", "1.5.0")],
            self.constant(1.0),
        );
        let boot = 1_690_000_000.0 + self.rng.below(10_000_000) as f64;
        self.push("node_boot_time_seconds", &[], self.constant(boot));
        self.push(
            "node_time_zone_offset_seconds",
            &[("time_zone", "UTC")],
            self.constant(0.0),
        );
        self.push("node_textfile_scrape_error", &[], self.constant(0.0));
        self.push(
            "node_filefd_maximum",
            &[],
            self.constant(9_223_372_036_854_775_807.0),
        );
        self.push(
            "node_nf_conntrack_entries_limit",
            &[],
            self.constant(262_144.0),
        );
        // Wall clock: float64(UnixNano()) / 1e9.
        let clock = self
            .times
            .iter()
            .map(|&t| ((t * 1_000_000 + 123_456) as f64) / 1e9)
            .collect();
        self.push("node_time_seconds", &[], clock);

        // CPU: USER_HZ ticks / 100, so two decimals.
        for cpu in ["0", "1", "2", "3"] {
            for (mode, pct) in [
                ("idle", 85.0),
                ("user", 8.0),
                ("system", 4.0),
                ("softirq", 0.5),
                ("iowait", 0.05),
                ("irq", 0.01),
                ("steal", 0.0),
                ("nice", 0.0),
            ] {
                let v = self.counter(pct, 2, false);
                self.push("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)], v);
            }
            for mode in ["nice", "user"] {
                let v = self.constant(0.0);
                self.push(
                    "node_cpu_guest_seconds_total",
                    &[("cpu", cpu), ("mode", mode)],
                    v,
                );
            }
            let max = 3_600_000.0 + self.rng.below(4) as f64 * 100_000.0;
            let v = self.constant(max);
            self.push("node_cpu_scaling_frequency_max_hertz", &[("cpu", cpu)], v);
            let v = self.gauge(2_000_000, 300_000, 1000, 0);
            self.push("node_cpu_scaling_frequency_hertz", &[("cpu", cpu)], v);
        }
        for (name, mean, step) in [
            ("node_load1", 80, 10),
            ("node_load5", 80, 3),
            ("node_load15", 80, 1),
        ] {
            let v = self.gauge(mean, step, 1, 2);
            self.push(name, &[], v);
        }
        for (name, rate) in [
            ("node_context_switches_total", 600.0),
            ("node_intr_total", 400.0),
            ("node_forks_total", 3.0),
        ] {
            let v = self.counter(rate, 0, false);
            self.push(name, &[], v);
        }
        let v = self.gauge(1, 1, 1, 0);
        self.push("node_procs_running", &[], v);
        let v = self.gauge(0, 0, 1, 0);
        self.push("node_procs_blocked", &[], v);
        self.push("node_entropy_available_bits", &[], self.constant(256.0));

        // Memory in kB * 1024: a dozen moving, the rest fixed.
        let total_kb = 16_000_000 + self.rng.below(16) as i64 * 1_000_000;
        for (name, frac, step) in [
            ("MemFree", 0.2, 4000),
            ("MemAvailable", 0.6, 4000),
            ("Cached", 0.35, 2000),
            ("Buffers", 0.02, 50),
            ("Active", 0.3, 3000),
            ("Inactive", 0.25, 2000),
            ("Active_file", 0.2, 2000),
            ("Inactive_file", 0.2, 2000),
            ("Dirty", 0.0005, 300),
            ("Slab", 0.03, 100),
            ("AnonPages", 0.1, 1000),
            ("Committed_AS", 0.5, 3000),
        ] {
            let v = self.gauge((total_kb as f64 * frac) as i64, step, 1024, 0);
            self.push(&format!("node_memory_{name}_bytes"), &[], v);
        }
        let fixed = [
            ("MemTotal", total_kb),
            ("SwapTotal", 0),
            ("SwapFree", 0),
            ("SwapCached", 0),
            ("HugePages_Total", 0),
            ("HugePages_Free", 0),
            ("Hugepagesize", 2048),
            ("Mlocked", 0),
            ("Unevictable", 0),
            ("VmallocTotal", 34_359_738_367),
            ("VmallocChunk", 0),
            ("HardwareCorrupted", 0),
            ("CmaTotal", 0),
            ("DirectMap4k", 350_000),
            ("DirectMap2M", 9_000_000),
            ("DirectMap1G", 8_388_608),
            ("Bounce", 0),
            ("NFS_Unstable", 0),
            ("WritebackTmp", 0),
            ("KernelStack", 9_000),
        ];
        for (name, kb) in fixed {
            self.push(
                &format!("node_memory_{name}_bytes"),
                &[],
                self.constant((kb * 1024) as f64),
            );
        }

        // Network: eth0 busy, lo a little, the rest idle; device metadata fixed.
        for (device, scale) in [
            ("eth0", 1.0),
            ("lo", 0.01),
            ("docker0", 0.0),
            ("veth1a2b3c", 0.0),
            ("wlan0", 0.0),
            ("br-5f0e", 0.0),
        ] {
            let labels = [("device", device)];
            for (dir, rate) in [("receive", 1.0), ("transmit", 0.7)] {
                let bytes = self.counter(200_000.0 * scale * rate, 0, false);
                self.push(&format!("node_network_{dir}_bytes_total"), &labels, bytes);
                let packets = self.counter(300.0 * scale * rate, 0, false);
                self.push(
                    &format!("node_network_{dir}_packets_total"),
                    &labels,
                    packets,
                );
                for (what, per_day) in [("errs", 0.2), ("drop", 2.0 * scale)] {
                    let v = self.rare_counter(per_day);
                    self.push(&format!("node_network_{dir}_{what}_total"), &labels, v);
                }
            }
            for (name, v) in [
                ("node_network_mtu_bytes", 1500.0),
                ("node_network_up", 1.0),
                ("node_network_carrier", 1.0),
                ("node_network_speed_bytes", 125_000_000.0),
                ("node_network_flags", 4099.0),
                ("node_network_iface_id", 2.0),
                ("node_network_transmit_queue_length", 1000.0),
            ] {
                self.push(name, &labels, self.constant(v));
            }
        }
        for (name, rate) in [
            ("node_netstat_Tcp_InSegs", 250.0),
            ("node_netstat_Tcp_OutSegs", 240.0),
            ("node_netstat_IpExt_InOctets", 200_000.0),
            ("node_netstat_IpExt_OutOctets", 150_000.0),
            ("node_netstat_Udp_InDatagrams", 5.0),
            ("node_netstat_Tcp_ActiveOpens", 0.5),
            ("node_netstat_Tcp_PassiveOpens", 0.3),
            ("node_netstat_Tcp_RetransSegs", 0.05),
        ] {
            let v = self.counter(rate, 0, false);
            self.push(name, &[], v);
        }
        for name in [
            "node_netstat_Tcp_InErrs",
            "node_netstat_Udp_InErrors",
            "node_netstat_Udp_NoPorts",
            "node_netstat_Icmp_InErrors",
            "node_netstat_TcpExt_ListenDrops",
            "node_netstat_TcpExt_ListenOverflows",
            "node_netstat_TcpExt_SyncookiesFailed",
            "node_netstat_Udp6_InErrors",
        ] {
            let v = self.rare_counter(0.5);
            self.push(name, &[], v);
        }

        // Disks: sectors of 512 bytes, times as float64(ms) * 0.001.
        for (device, scale) in [("nvme0n1", 1.0), ("sda", 0.02), ("sr0", 0.0)] {
            let labels = [("device", device)];
            let v = self.counter(20.0 * scale, 0, false);
            self.push("node_disk_reads_completed_total", &labels, v);
            let v = self.counter(35.0 * scale, 0, false);
            self.push("node_disk_writes_completed_total", &labels, v);
            let v = self.counter(100.0 * scale, 0, false);
            let v = v.into_iter().map(|x| x * 512.0).collect();
            self.push("node_disk_read_bytes_total", &labels, v);
            let v = self.counter(300.0 * scale, 0, false);
            let v = v.into_iter().map(|x| x * 512.0).collect();
            self.push("node_disk_written_bytes_total", &labels, v);
            for (what, rate) in [
                ("io_time", 12.0),
                ("read_time", 4.0),
                ("write_time", 30.0),
                ("io_time_weighted", 40.0),
            ] {
                let v = self.counter(rate * scale, 0, false);
                let v = v.into_iter().map(|ms| ms * 0.001).collect();
                self.push(&format!("node_disk_{what}_seconds_total"), &labels, v);
            }
            let v = self.gauge(0, (scale > 0.5) as i64, 1, 0);
            self.push("node_disk_io_now", &labels, v);
            for name in ["discards_completed", "discarded_sectors", "flush_requests"] {
                let v = self.rare_counter(scale * 20.0);
                self.push(&format!("node_disk_{name}_total"), &labels, v);
            }
        }

        // Filesystems: 4 KiB blocks; two with writes, the rest fixed.
        for (mountpoint, device, fstype, blocks, busy) in [
            ("/", "/dev/nvme0n1p2", "ext4", 120_000_000i64, true),
            ("/data", "/dev/sda1", "xfs", 500_000_000, true),
            ("/boot", "/dev/nvme0n1p1", "vfat", 130_000, false),
            ("/run", "tmpfs", "tmpfs", 400_000, false),
            ("/dev/shm", "tmpfs", "tmpfs", 2_000_000, false),
        ] {
            let labels = [
                ("device", device),
                ("fstype", fstype),
                ("mountpoint", mountpoint),
            ];
            let size = self.constant((blocks * 4096) as f64);
            self.push("node_filesystem_size_bytes", &labels, size);
            let free = self.gauge(blocks / 3, if busy { 40 } else { 0 }, 4096, 0);
            let reserved = (blocks / 20 * 4096) as f64;
            let avail = free.iter().map(|f| (f - reserved).max(0.0)).collect();
            self.push("node_filesystem_free_bytes", &labels, free);
            self.push("node_filesystem_avail_bytes", &labels, avail);
            self.push(
                "node_filesystem_files",
                &labels,
                self.constant((blocks / 4) as f64),
            );
            let files_free = self.gauge(blocks / 5, busy as i64, 1, 0);
            self.push("node_filesystem_files_free", &labels, files_free);
            self.push("node_filesystem_readonly", &labels, self.constant(0.0));
            self.push("node_filesystem_device_error", &labels, self.constant(0.0));
        }

        // Temperatures with one decimal, changing now and then.
        for (chip, sensor) in [
            ("coretemp", "temp1"),
            ("coretemp", "temp2"),
            ("nvme", "temp1"),
            ("acpitz", "temp1"),
        ] {
            let labels = [("chip", chip), ("sensor", sensor)];
            let mut t = 450 + self.rng.below(100) as i64;
            let v = (0..self.times.len())
                .map(|_| {
                    if self.rng.below(5) == 0 {
                        t += self.rng.below(5) as i64 - 2;
                    }
                    t as f64 / 10.0
                })
                .collect();
            self.push("node_hwmon_temp_celsius", &labels, v);
            self.push(
                "node_hwmon_temp_crit_celsius",
                &labels,
                self.constant(100.0),
            );
            self.push("node_hwmon_chip_names", &labels, self.constant(1.0));
        }

        // Virtual memory counters.
        for (name, rate) in [
            ("pgfault", 2000.0),
            ("pgmajfault", 0.2),
            ("pgpgin", 50.0),
            ("pgpgout", 150.0),
        ] {
            let v = self.counter(rate, 0, false);
            self.push(&format!("node_vmstat_{name}"), &[], v);
        }
        for name in ["pswpin", "pswpout", "oom_kill"] {
            self.push(&format!("node_vmstat_{name}"), &[], self.constant(0.0));
        }

        // Collectors: durations from time.Since(..).Seconds(), success fixed.
        let collectors = [
            "arp",
            "bcache",
            "bonding",
            "btrfs",
            "conntrack",
            "cpu",
            "cpufreq",
            "diskstats",
            "dmi",
            "edac",
            "entropy",
            "fibrechannel",
            "filefd",
            "filesystem",
            "hwmon",
            "infiniband",
            "ipvs",
            "loadavg",
            "mdadm",
            "meminfo",
            "netclass",
            "netdev",
            "netstat",
            "nfs",
            "nvme",
            "os",
            "powersupplyclass",
            "pressure",
            "rapl",
            "schedstat",
            "selinux",
            "sockstat",
            "softnet",
            "stat",
            "tapestats",
            "textfile",
            "thermal_zone",
            "time",
            "timex",
            "udp_queues",
            "uname",
            "vmstat",
            "xfs",
            "zfs",
        ];
        for c in collectors {
            // Means from 3 us to 2 ms, log-uniform, as measured.
            let mean = 10f64.powf(3.5 + 2.8 * self.rng.unit());
            let v = self.durations(mean);
            self.push(
                "node_scrape_collector_duration_seconds",
                &[("collector", c)],
                v,
            );
        }
        self.constants(
            "node_scrape_collector_success",
            "collector",
            &collectors,
            1.0,
        );
        let v = self.durations(25e6);
        self.push("scrape_duration_seconds", &[], v);
        let n = self.series.len() as f64 + 4.0;
        self.push("scrape_samples_scraped", &[], self.constant(n));
        self.push(
            "scrape_samples_post_metric_relabeling",
            &[],
            self.constant(n),
        );
        self.push("scrape_series_added", &[], self.constant(0.0));
    }

    /// An application like Prometheus itself, about 170 series: Go runtime
    /// and process gauges, request counters and classic histograms for a few
    /// busy and several idle handlers.
    fn api(&mut self) {
        self.push("up", &[], self.constant(1.0));
        self.push(
            "api_build_info",
            &[("goversion", "go1.21.4"), ("version", "2.3.1")],
            self.constant(1.0),
        );
        self.push("go_info", &[("version", "go1.21.4")], self.constant(1.0));
        let hash = self.rng.below(1 << 53) as f64;
        self.push("api_config_hash", &[], self.constant(hash));
        self.push("api_config_last_reload_successful", &[], self.constant(1.0));
        let start = (169_999_000_000 + self.rng.below(1_000_000) as i64) as f64 / 100.0;
        self.push("process_start_time_seconds", &[], self.constant(start));
        self.push("process_max_fds", &[], self.constant(1_048_576.0));
        self.push(
            "process_virtual_memory_max_bytes",
            &[],
            self.constant(u64::MAX as f64),
        );

        // Requests and latency histograms per handler: a few busy, most idle.
        let handlers = [
            ("/api/v1/query", 5.0),
            ("/api/v1/query_range", 0.5),
            ("/metrics", 0.067),
            ("/api/v1/series", 0.01),
            ("/api/v1/labels", 0.0),
            ("/api/v1/rules", 0.0),
            ("/-/ready", 0.0),
            ("/-/healthy", 0.0),
        ];
        let bounds = [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ];
        let shares = [
            0.55, 0.2, 0.1, 0.06, 0.04, 0.025, 0.012, 0.006, 0.004, 0.002, 0.001, 0.0,
        ];
        for (handler, rate) in handlers {
            for (code, share) in [("200", 0.98), ("400", 0.015), ("503", 0.005)] {
                let v = self.counter(rate * share, 0, true);
                self.push(
                    "http_requests_total",
                    &[("code", code), ("handler", handler)],
                    v,
                );
            }
            // Cumulative buckets, a float `_sum` accumulated like
            // client_golang does, and `_count`.
            let n = self.times.len();
            let mut buckets = vec![Vec::with_capacity(n); bounds.len()];
            let mut sums = Vec::with_capacity(n);
            let mut counts = Vec::with_capacity(n);
            let mut cum = vec![0i64; bounds.len()];
            let mut sum = 0f64;
            for i in 0..n {
                if Some(i) == self.restart {
                    cum.iter_mut().for_each(|c| *c = 0);
                    sum = 0.0;
                }
                let mut below = 0;
                for (b, share) in shares.iter().enumerate() {
                    let c = self.rng.count(rate * share * self.dts[i]);
                    below += c;
                    cum[b] += below;
                    for _ in 0..c.min(4) {
                        sum += 0.003 * (b as f64 + 1.0) * (0.5 + self.rng.unit());
                    }
                }
                for (b, col) in buckets.iter_mut().enumerate() {
                    col.push(cum[b] as f64);
                }
                sums.push(sum);
                counts.push(cum[bounds.len() - 1] as f64);
            }
            for (le, col) in bounds.iter().zip(buckets) {
                self.push(
                    "http_request_duration_seconds_bucket",
                    &[("handler", handler), ("le", le)],
                    col,
                );
            }
            self.push(
                "http_request_duration_seconds_sum",
                &[("handler", handler)],
                sums,
            );
            self.push(
                "http_request_duration_seconds_count",
                &[("handler", handler)],
                counts,
            );
        }

        // Process and Go runtime.
        let v = self.counter(8.0, 2, true);
        self.push("process_cpu_seconds_total", &[], v);
        let v = self.gauge(60_000, 30, 4096, 0);
        self.push("process_resident_memory_bytes", &[], v);
        let v = self.gauge(400_000, 30, 4096, 0);
        self.push("process_virtual_memory_bytes", &[], v);
        let v = self.gauge(40, 1, 1, 0);
        self.push("process_open_fds", &[], v);
        let v = self.gauge(120, 6, 1, 0);
        self.push("go_goroutines", &[], v);
        self.push("go_threads", &[], self.constant(14.0));
        // Heap: a GC sawtooth of arbitrary byte and object counts.
        let n = self.times.len();
        let (mut heap, mut objects, mut alloc_total, mut mallocs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut h, mut total, mut m) = (50_000_000i64, 0i64, 0i64);
        for _ in 0..n {
            let step = self.rng.below(3_000_000) as i64;
            h += step;
            total += step;
            m += step / 180;
            if h > 90_000_000 {
                h = 40_000_000 + self.rng.below(5_000_000) as i64;
            }
            heap.push(h as f64);
            objects.push((h / 150) as f64);
            alloc_total.push(total as f64);
            mallocs.push(m as f64);
        }
        let inuse: Vec<f64> = heap
            .iter()
            .map(|h| ((*h as i64 / 8192 + 40) * 8192) as f64)
            .collect();
        let idle: Vec<f64> = inuse.iter().map(|i| (120_000_000.0 - i).max(0.0)).collect();
        self.push("go_memstats_heap_alloc_bytes", &[], heap.clone());
        self.push("go_memstats_alloc_bytes", &[], heap);
        self.push("go_memstats_heap_objects", &[], objects);
        self.push("go_memstats_alloc_bytes_total", &[], alloc_total);
        self.push("go_memstats_mallocs_total", &[], mallocs);
        self.push("go_memstats_heap_inuse_bytes", &[], inuse);
        self.push("go_memstats_heap_idle_bytes", &[], idle);
        let v = self.gauge(130_000_000 / 4096, 100, 4096, 0);
        self.push("go_memstats_sys_bytes", &[], v);
        let v = self.counter(0.05, 0, true);
        self.push("go_gc_cycles_total", &[], v);
        // GC pause quantiles move only when a collection happens.
        for (q, mean) in [
            ("0", 2e4),
            ("0.25", 3e4),
            ("0.5", 5e4),
            ("0.75", 8e4),
            ("1", 3e5),
        ] {
            let fresh = self.durations(mean);
            let mut v = Vec::with_capacity(n);
            for x in fresh {
                let keep = self.rng.below(3) != 0;
                v.push(match v.last() {
                    Some(&last) if keep => last,
                    _ => x,
                });
            }
            self.push("go_gc_duration_seconds", &[("quantile", q)], v);
        }
        // A full-precision ratio, slowly moving.
        let mut a = 1000.0;
        let mut ratio = Vec::with_capacity(n);
        for _ in 0..n {
            a += self.rng.below(5) as f64;
            ratio.push(a / (a + 50_000.0));
        }
        self.push("go_memstats_gc_cpu_fraction", &[], ratio);
        let v = self.durations(4e6);
        self.push("scrape_duration_seconds", &[], v);
        let n = self.series.len() as f64 + 4.0;
        self.push("scrape_samples_scraped", &[], self.constant(n));
        self.push(
            "scrape_samples_post_metric_relabeling",
            &[],
            self.constant(n),
        );
        self.push("scrape_series_added", &[], self.constant(0.0));
    }
}

/// Writes `series` as OpenMetrics text that `promtool tsdb create-blocks-from
/// openmetrics` reads: series grouped by metric family with a `# TYPE` line
/// each, samples with timestamps in seconds, `# EOF` last.
///
/// Family and type are inferred from names: `x_total` is a counter `x`;
/// `x_bucket` with `le`, and its `x_sum` and `x_count`, a histogram `x`;
/// `x{quantile}` with its `x_sum`/`x_count`, a summary; anything else a gauge.
/// Values are written so that Go's `ParseFloat` gives back the same bits;
/// NaN payloads (stale markers) cannot be written and become plain `NaN`.
pub fn write_openmetrics(series: &[Series], w: &mut impl Write) -> io::Result<()> {
    let name = |s: &Series| s.labels.metric_name().unwrap_or_default().to_string();
    let histograms: Vec<String> = series
        .iter()
        .filter(|s| s.labels.get("le").is_some())
        .filter_map(|s| name(s).strip_suffix("_bucket").map(str::to_string))
        .collect();
    let summaries: Vec<String> = series
        .iter()
        .filter(|s| s.labels.get("quantile").is_some())
        .map(name)
        .collect();
    let family = |n: &str| -> (String, &'static str) {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = n.strip_suffix(suffix)
                && histograms.iter().any(|h| h == base)
            {
                return (base.to_string(), "histogram");
            }
        }
        if summaries.iter().any(|s| s == n) {
            return (n.to_string(), "summary");
        }
        for suffix in ["_sum", "_count"] {
            if let Some(base) = n.strip_suffix(suffix)
                && summaries.iter().any(|s| s == base)
            {
                return (base.to_string(), "summary");
            }
        }
        match n.strip_suffix("_total") {
            Some(base) => (base.to_string(), "counter"),
            None => (n.to_string(), "gauge"),
        }
    };
    // Family -> (type, series in input order); families in name order.
    let mut families: BTreeMap<String, (&'static str, Vec<&Series>)> = BTreeMap::new();
    for s in series {
        let (f, kind) = family(&name(s));
        families.entry(f).or_insert((kind, Vec::new())).1.push(s);
    }
    let mut line = String::new();
    for (f, (kind, members)) in &families {
        writeln!(w, "# TYPE {f} {kind}")?;
        for s in members {
            let mut prefix = name(s);
            let mut first = true;
            for l in s.labels.iter().filter(|l| l.name != METRIC_NAME) {
                prefix.push(if first { '{' } else { ',' });
                first = false;
                prefix.push_str(&l.name);
                prefix.push_str("=\"");
                for c in l.value.chars() {
                    match c {
                        '\\' => prefix.push_str("\\\\"),
                        '"' => prefix.push_str("\\\""),
                        '\n' => prefix.push_str("\\n"),
                        c => prefix.push(c),
                    }
                }
                prefix.push('"');
            }
            if !first {
                prefix.push('}');
            }
            for x in &s.samples {
                line.clear();
                line.push_str(&prefix);
                line.push(' ');
                push_value(&mut line, x.v);
                line.push(' ');
                push_seconds(&mut line, x.t);
                line.push('\n');
                w.write_all(line.as_bytes())?;
            }
        }
    }
    w.write_all(b"# EOF\n")
}

/// Rust's `{}`/`{:e}` print the shortest digits that round-trip, and Go's
/// `ParseFloat` rounds correctly, so the bits survive.
fn push_value(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

/// Milliseconds as seconds with a fraction. Prometheus reads the seconds as a
/// float64 and converts `seconds * 1000` to int64, truncating toward zero;
/// when `S.mmm` would read back a hair short of the millisecond, half a
/// millisecond more (`S.mmm5`) truncates to the right one.
fn push_seconds(out: &mut String, ms: i64) {
    use std::fmt::Write as _;
    if ms < 0 {
        out.push('-');
    }
    let a = ms.unsigned_abs();
    let start = out.len();
    let _ = write!(out, "{}.{:03}", a / 1000, a % 1000);
    let back = out[start..].parse::<f64>().map(|s| (s * 1000.0) as u64);
    if back != Ok(a) {
        out.push('5');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(labels.iter().copied()).unwrap(),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }
    }

    #[test]
    fn openmetrics_groups_families_and_formats_values() {
        let input = vec![
            series(
                &[("__name__", "req_total"), ("code", "200")],
                &[(1000, 1.0), (16_001, 3.0)],
            ),
            series(
                &[("__name__", "lat_bucket"), ("le", "+Inf")],
                &[(1000, 2.0)],
            ),
            series(
                &[("__name__", "temp"), ("path", "a\"b\\c\nd")],
                &[(-1500, -0.0), (0, 21.5)],
            ),
            series(&[("__name__", "lat_sum")], &[(1000, 0.1 + 0.2)]),
            series(
                &[("__name__", "req_total"), ("code", "500")],
                &[(1000, f64::INFINITY)],
            ),
            series(&[("__name__", "lat_count")], &[(1000, 2.0)]),
            series(
                &[("__name__", "gc"), ("quantile", "0.5")],
                &[(1000, 1.5e-5)],
            ),
            series(&[("__name__", "gc_count")], &[(1000, f64::NAN)]),
            series(
                &[("__name__", "big")],
                &[(1000, 1e300), (2000, f64::NEG_INFINITY)],
            ),
        ];
        let mut out = Vec::new();
        write_openmetrics(&input, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "# TYPE big gauge\n\
             big 1e300 1.000\n\
             big -Inf 2.000\n\
             # TYPE gc summary\n\
             gc{quantile=\"0.5\"} 1.5e-5 1.000\n\
             gc_count NaN 1.000\n\
             # TYPE lat histogram\n\
             lat_bucket{le=\"+Inf\"} 2 1.000\n\
             lat_sum 0.30000000000000004 1.000\n\
             lat_count 2 1.000\n\
             # TYPE req counter\n\
             req_total{code=\"200\"} 1 1.000\n\
             req_total{code=\"200\"} 3 16.001\n\
             req_total{code=\"500\"} +Inf 1.000\n\
             # TYPE temp gauge\n\
             temp{path=\"a\\\"b\\\\c\\nd\"} -0 -1.500\n\
             temp{path=\"a\\\"b\\\\c\\nd\"} 21.5 0.000\n\
             # EOF\n"
        );
    }

    #[test]
    fn timestamps_survive_truncating_import() {
        for ms in (0..200_000).chain(1_700_000_000_000..1_700_000_100_000) {
            for ms in [ms, -ms] {
                let mut s = String::new();
                push_seconds(&mut s, ms);
                let back = (s.parse::<f64>().unwrap() * 1000.0) as i64;
                assert_eq!(back, ms, "{s}");
            }
        }
    }

    #[test]
    fn realistic_is_deterministic_and_plausible() {
        let spec = DataSpec {
            series: 2500,
            duration_ms: 3_600_000,
            interval_ms: 15_000,
            start_ms: 1_700_000_000_000,
            seed: 7,
        };
        let a = realistic(&spec);
        assert_eq!(a, realistic(&spec));
        // Targets do not repeat each other's values.
        let durations: Vec<Vec<u64>> = a
            .iter()
            .filter(|s| s.labels.metric_name() == Some("scrape_duration_seconds"))
            .map(|s| s.samples.iter().map(|x| x.v.to_bits()).collect())
            .collect();
        let distinct: std::collections::HashSet<_> = durations.iter().collect();
        assert!(durations.len() >= 8);
        assert_eq!(distinct.len(), durations.len());
        assert_eq!(a.len(), 2500);
        let mut ids = std::collections::HashSet::new();
        for s in &a {
            assert!(ids.insert(s.labels.clone()), "duplicate {}", s.labels);
            assert!(s.labels.get("job").is_some() && s.labels.get("instance").is_some());
            assert!(
                s.samples.len() >= 230 && s.samples.len() <= 240,
                "{}",
                s.samples.len()
            );
            assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
            let (lo, hi) = (spec.start_ms, spec.start_ms + spec.duration_ms + 300);
            assert!(
                s.samples
                    .iter()
                    .all(|x| x.t >= lo && x.t < hi && x.v.is_finite())
            );
        }
        assert!(a.iter().any(|s| s.labels.get("le") == Some("+Inf")));
        // Counters only go down at a restart.
        let c = a
            .iter()
            .find(|s| s.labels.metric_name() == Some("node_cpu_seconds_total"))
            .unwrap();
        assert!(c.samples.windows(2).all(|w| w[0].v <= w[1].v));
    }
}
