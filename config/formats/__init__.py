"""Date and time formats of the admin (``FORMAT_MODULE_PATH``): every time a page shows carries its
zone, to the second, in ISO order, as the console's own fields do (apps/jobs/admin.py,
``with_zone``)."""
