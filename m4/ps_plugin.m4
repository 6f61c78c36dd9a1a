# PS_PLUGIN(NAME, DESCRIPTION)
# Adds --enable-plugin-NAME / --disable-plugin-NAME (enabled by default) and the
# automake conditional BUILD_PLUGIN_NAME used by plugins/NAME/Makefile.am.
AC_DEFUN([PS_PLUGIN], [
	AC_ARG_ENABLE([plugin-$1],
		[AS_HELP_STRING([--disable-plugin-$1], [do not build the $1 plugin ($2)])],
		[], [enable_plugin_$1=yes])
	AM_CONDITIONAL(m4_toupper([BUILD_PLUGIN_$1]), [test "x$enable_plugin_$1" = xyes])
	AS_IF([test "x$enable_plugin_$1" = xyes], [PS_PLUGINS_ENABLED="$PS_PLUGINS_ENABLED $1"])
])
