"""``mjq dashboard``: the overview as a web page served by Voilà, with its token,
host names, roles and bounded kernels."""
