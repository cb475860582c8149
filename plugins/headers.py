"""headers - check the message header: required fields, single fields, a sane Date

Arguments: `headers [require F1,F2...] [future DAYS] [past DAYS] [reject 0|1|naughty] [reject_type perm|temp]`

  require      comma-separated fields that must be present and not empty
               (default From, as qpsmtpd: some senders omit Date, which
               RFC 5322 3.6 requires; `require From,Date` to insist).
  future       refuse a Date more than DAYS days ahead (default: no check).
  past         refuse a Date more than DAYS days old (default: no check).
  reject       1 (default): refuse the message; 0: only log what is wrong;
               naughty: store the refusal in the connection note `naughty`
               for the `naughty` plugin.
  reject_type  perm (default: 554), temp (451), disconnect, temp_disconnect.

Config files: none.

After the data, refuses a message that is empty, lacks a required field, or
has more than one of a field RFC 5322 3.6 allows only once (Date, From,
Sender, Reply-To, To, Cc, Bcc, Message-ID, In-Reply-To, References, Subject),
with one reply line per problem ("We require a valid From header", "Only one
Subject header allowed. See RFC 5322, Section 3.6"). With `future`/`past`, a
Date too far off is refused ("The Date header is too far in the past").
A Date that cannot be parsed (RFC 5322 syntax and its obsolete forms are
read) is logged and not judged. Relay clients are not checked.
qpsmtpd 0.94 answers "552 901" for missing or repeated fields (a bug); here
the reply names what is wrong.

Example config/plugins line:

    headers reject 1 reject_type temp require From,Date future 2 past 15

Imports at load: none beyond the core.
"""

import time

from qpsmtpd_stdio import DECLINED, LOGINFO, LOGWARN
from qpsmtpd_stdio.digits import number

SINGULAR = ("Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-Id", "In-Reply-To", "References",
            "Subject")
MAX_DATE = 200  # octets of a Date value worth parsing
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_ZONES = {"ut": 0, "gmt": 0, "z": 0, "edt": -4, "est": -5, "cdt": -5, "cst": -6, "mdt": -6, "mst": -7, "pdt": -7,
          "pst": -8}


def register(plugin, *args):
    if len(args) % 2:
        plugin.log(LOGWARN, "odd number of arguments; the last is ignored")
    plugin.opts = plugin.options({"require": "From", "reject": "1", "reject_type": "perm"})
    plugin.required = [h.strip() for h in plugin.opts["require"].split(",") if h.strip()]
    plugin.days = {}
    for key in ("future", "past"):
        if key in plugin.opts:
            try:
                plugin.days[key] = float(plugin.opts[key])
            except ValueError:
                raise ValueError(f"headers: {key} must be a number of days, not {plugin.opts[key]!r}") from None


def hook_data_post(plugin, txn):
    if txn.data_size == 0:
        return reject(plugin, ["You must send some data first"])
    if plugin.is_immune(txn, quiet=True):
        plugin.log(LOGINFO, "skip, relay client or whitelisted")
        return DECLINED
    header = txn.header
    errors = [f"We require a valid {name} header" for name in plugin.required if not header.get(name)]
    errors += [f"Only one {name} header allowed. See RFC 5322, Section 3.6"
               for name in SINGULAR if header.count(name) > 1]
    date = header.get("Date")
    if date and plugin.days:
        when = parse_date(date)
        if when is None:
            plugin.log(LOGINFO, f"skip, date not parseable ({date[:MAX_DATE]})")
        elif "past" in plugin.days and when < time.time() - plugin.days["past"] * 86400:
            errors.append("The Date header is too far in the past")
        elif "future" in plugin.days and when > time.time() + plugin.days["future"] * 86400:
            errors.append("The Date header is too far in the future")
    if errors:
        return reject(plugin, errors)
    plugin.log(LOGINFO, "pass")
    return DECLINED


def reject(plugin, errors):
    return plugin.get_reject(errors, "; ".join(errors))


def parse_date(text):
    """Seconds since the epoch of an RFC 5322 date-time (obsolete forms too), or None.

    `[Mon,] 1 Jan 2024 12:00[:00] +0000 [(comment)]`; 2- and 3-digit years,
    named and military zones (RFC 5322 4.3); no zone is read as UTC.
    """
    if len(text) > MAX_DATE:
        return None
    words = _drop_comments(text).replace(",", " ").split()
    if words and words[0][:3].lower() in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        words = words[1:]
    if len(words) < 4:
        return None
    day, month, year, clock = words[:4]
    zone = words[4] if len(words) > 4 else "+0000"
    month = _MONTHS.get(month[:3].lower()) if len(month) >= 3 else None
    clock = clock.split(":")
    day, year, clock = number(day, 99), number(year, 9999), [number(c, 99) for c in clock]
    if not (month and day is not None and year is not None and 2 <= len(clock) <= 3 and None not in clock):
        return None
    year += 2000 if len(words[2]) <= 2 and year < 50 else 1900 if len(words[2]) <= 3 else 0
    hour, minute, second = clock + [0] * (3 - len(clock))
    if not (1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    if zone[:1] in "+-" and len(zone) == 5 and number(zone[1:]) is not None:
        offset = (number(zone[1:3]) * 60 + number(zone[3:])) * (-1 if zone[0] == "-" else 1)
    elif zone.lower() in _ZONES:
        offset = _ZONES[zone.lower()] * 60
    elif len(zone) == 1 and zone.isalpha():
        offset = 0  # military zones: RFC 5322 4.3 says treat as -0000
    else:
        return None
    return ((_days(year, month, day) * 24 + hour) * 60 + minute - offset) * 60 + second


def _drop_comments(text):
    out, depth = [], 0
    for c in text:
        depth += c == "("
        if not depth:
            out.append(c)
        depth -= c == ")" and depth > 0
    return "".join(out)


def _days(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
