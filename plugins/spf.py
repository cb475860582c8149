"""spf - the sender_permitted_from plugin under its common name

Arguments, config files and results: see plugins/sender_permitted_from.py.
Both names run the same code (qpsmtpd_stdio/spf.py).

Example config/plugins line:

    spf reject 3
"""

from qpsmtpd_stdio.spf import hook_data_post, hook_disconnect, hook_mail, register  # noqa: F401
