# PS_PROG_BPF_TOOLCHAIN
# Finds clang (with the bpf target), llvm-strip and bpftool; fails clearly when one is missing.
AC_DEFUN([PS_PROG_BPF_TOOLCHAIN], [
	AC_ARG_VAR([BPF_CLANG], [clang used to compile BPF objects])
	AC_ARG_VAR([LLVM_STRIP], [llvm-strip used to drop DWARF from BPF objects])
	AC_ARG_VAR([BPFTOOL], [bpftool used to generate libbpf skeletons])
	AC_PATH_PROGS([BPF_CLANG], [clang clang-16 clang-15 clang-14])
	AS_IF([test -z "$BPF_CLANG"], [AC_MSG_ERROR([clang is required to build the BPF objects: apt-get install clang])])
	AC_MSG_CHECKING([whether $BPF_CLANG targets bpf])
	AS_IF([echo 'int x;' | $BPF_CLANG -target bpf -x c -c -o /dev/null - 2>/dev/null],
		[AC_MSG_RESULT([yes])],
		[AC_MSG_RESULT([no]); AC_MSG_ERROR([$BPF_CLANG cannot compile for -target bpf])])
	AC_PATH_PROGS([LLVM_STRIP], [llvm-strip llvm-strip-16 llvm-strip-15 llvm-strip-14])
	AS_IF([test -z "$LLVM_STRIP"], [AC_MSG_ERROR([llvm-strip is required: apt-get install llvm])])
	AC_PATH_PROGS([BPFTOOL], [bpftool], [], [$PATH:/usr/sbin:/sbin])
	AS_IF([test -z "$BPFTOOL"], [AC_MSG_ERROR([bpftool is required to generate BPF skeletons: apt-get install bpftool])])
	AS_CASE([$host_cpu],
		[x86_64], [BPF_ARCH=x86],
		[aarch64], [BPF_ARCH=arm64],
		[AC_MSG_ERROR([no vmlinux.h for $host_cpu: add bpf/<arch>/vmlinux.h])])
	AC_SUBST([BPF_ARCH])
])
