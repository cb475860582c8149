"""`in.qpsmtpd --import-qpsmtpd-db greylisting|karma FILE`: qpsmtpd's DBM databases into the store, once.

Moving a site over, greylisting would otherwise defer every sender it
already knew once more, and karma would forget its penalty box:

    in.qpsmtpd --config /etc/qpsmtpd --import-qpsmtpd-db greylisting /var/lib/qpsmtpd/greylisting/greylist.dbm
    in.qpsmtpd --config /etc/qpsmtpd --import-qpsmtpd-db karma /var/lib/qpsmtpd/karma/karma.dbm

The plugin's line in config/plugins (its `db_dir`, `store`, triplet flags
and timeouts) says where the records go and how a greylisting key reads.
qpsmtpd ties these files with AnyDBM_File (DB_File, GDBM_File or
NDBM_File), so `perl`, which is on every machine qpsmtpd ran on, reads
them: it prints each pair hex-encoded, and nothing of it is evaluated here.
Records already expired are left out; a record we already hold is kept if
it is newer. Prints what it did; exits 1 if the file or the store cannot
be read.
"""

import ipaddress
import subprocess
import time

DUMP = ('BEGIN { @AnyDBM_File::ISA = qw(DB_File GDBM_File NDBM_File) } use AnyDBM_File; use Fcntl;'
        'tie(my %h, "AnyDBM_File", $ARGV[0], O_RDONLY, 0) or die "cannot open $ARGV[0]: $!\\n";'
        'while (my ($k, $v) = each %h) { print unpack("H*", $k), " ", unpack("H*", $v), "\\n" }')
MAX_KEY, MAX_VALUE = 1024, 256  # octets: anything longer is not a record these plugins wrote


def read_dbm(path: str, perl: str = "perl") -> list[tuple[str, str]]:
    """The (key, value) pairs of a qpsmtpd DBM file. Raises OSError or ValueError if it cannot be read."""
    done = subprocess.run([perl, "-e", DUMP, path], capture_output=True, timeout=600)
    if done.returncode:
        raise ValueError(done.stderr.decode("utf-8", "replace").strip() or f"perl exited {done.returncode}")
    pairs = []
    for line in done.stdout.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key and len(key) <= 2 * MAX_KEY and len(value) <= 2 * MAX_VALUE:
            pairs.append((bytes.fromhex(key.decode()).decode("latin-1"), bytes.fromhex(value.decode()).decode("latin-1")))
    return pairs


def ip_of(integer: str) -> str | None:
    """Net::IP's intip back to an address: 32 bits or fewer is IPv4."""
    if not (integer.isascii() and integer.isdigit()) or len(integer) > 39:
        return None
    value = int(integer)
    try:
        return str(ipaddress.IPv4Address(value) if value < 1 << 32 else ipaddress.IPv6Address(value))
    except ValueError:
        return None


def greylisting_record(plugin, key: str, value: str, now: float):
    """(our key, (ts, black, white), expires at) for one of qpsmtpd's records, or None to leave it out.

    qpsmtpd's key is `INTIP:sender:recipient` (the parts its flags enable;
    a null sender is empty); its value `ts:new:black:white`.
    """
    flags = plugin.flags
    parts = key.split(":")
    wanted = [name for name in ("remote_ip", "sender", "recipient") if flags[name]]
    if len(parts) != len(wanted) and not (flags["sender"] or flags["recipient"]):
        return None
    if len(parts) > len(wanted):  # an address with ':' in it: the rest after the IP belongs to the addresses
        parts = parts[:1] + [":".join(parts[1:])] if len(wanted) == 2 else None
        if parts is None:
            return None
    ours = []
    for name, part in zip(wanted, parts):
        if name == "remote_ip":
            ip = ip_of(part)
            if ip is None:
                return None
            ours.append(ip)
        else:
            ours.append(part.lower() if part else "<>")
    fields = value.split(":")
    try:
        ts, black, white = float(fields[0]), int(fields[2]), int(fields[3])
    except (ValueError, IndexError):
        return None
    expires = ts + (plugin.timeouts["white_timeout"] if white else plugin.timeouts["grey_timeout"])
    return ("|".join(ours), (ts, black, white), expires) if expires > now else None


def karma_record(plugin, key: str, value: str, now: float):
    """(ip, (penalty_start, naughty, nice, connects, last), expires at) for one of qpsmtpd's, or None.

    qpsmtpd's key is the client's INTIP; its value `penalty_start:naughty:nice:connects`.
    """
    ip = ip_of(key)
    fields = value.split(":")
    try:
        start, naughty, nice, connects = float(fields[0] or 0), int(fields[1]), int(fields[2]), int(fields[3])
    except (ValueError, IndexError):
        return None
    return (ip, (start, naughty, nice, connects, now), plugin.expire_at(start, now)) if ip else None


# plugin: (its table in the store, the table's fields, the reader of one record)
PLUGINS = {"greylisting": ("greylist", ("ts", "black", "white"), greylisting_record),
           "karma": ("karma", ("penalty_start", "naughty", "nice", "connects", "last"), karma_record)}


def run(config_dir: str | None, plugin_name: str, path: str, out) -> int:
    """Import one file; print what was done to `out`. 0, or 1 if nothing could be imported."""
    from .config import Config, find_config_dir
    from .connection import identify
    from .log import Log
    from . import pluginhost, store

    if plugin_name not in PLUGINS:
        out.write(f"--import-qpsmtpd-db: {plugin_name!r} is not one of {', '.join(PLUGINS)}\n")
        return 1
    config = Config(find_config_dir(config_dir))
    line = next((item.split() for item in config.get("plugins") if item.split()[0] == plugin_name), [plugin_name])
    log = Log()
    log.sinks.append(lambda level, hook, name, message: level <= 4 and out.write(f"{name}: {message}\n"))
    host = pluginhost.PluginHost(config, log, identify({"TCPREMOTEIP": "127.0.0.1"}))
    try:
        plugin = host.load(line[0], line[1:])
        pairs = read_dbm(path)
    except (pluginhost.PluginLoadError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        out.write(f"{path}: {exc}\n")
        return 1
    table, fields, reader = PLUGINS[plugin_name]
    db = store.open_store(plugin, plugin.opts.get("db_dir") if plugin_name == "karma" else plugin.db_dir, (table,),
                          plugin.opts.get("store") if plugin_name == "karma" else plugin.store_url)
    if db is None:
        out.write(f"{path}: the store cannot be opened (see the line above)\n")
        return 1
    now, taken, old, skipped = time.time(), 0, 0, 0
    try:
        for key, value in pairs:
            record = reader(plugin, key, value, now)
            if record is None:
                skipped += 1
                continue
            ours, row, expires = record

            def change(found, row=row, expires=expires):
                ours_is_newer = found is not None and (table == "karma" or found[0] >= row[0])
                return (None, None, False) if ours_is_newer else (row, expires, True)

            if db.update(table, ours, fields, change):
                taken += 1
            else:
                old += 1
    finally:
        db.close()
    out.write(f"{path}: {taken} records imported into the {table} table, {old} kept as we had them, "
              f"{skipped} expired or unreadable left out\n")
    return 0
