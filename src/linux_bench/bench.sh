# The Linux bench's parts (`cargo run -- bench linux`, src/linux_bench.rs), sourced by /init
# when the kernel command line has `turtles.bench=1`. A kernbench stand-in: tcc compiles our
# C program (src/linux_bench/*.c), which then runs as the compute part; busybox forks, execs
# and pipes; files on tmpfs go through gzip and bzip2. Each part is bracketed by marks
# (CPUID leaf 0x40000004, ECX = the tag, through /dev/cpu/0/cpuid): every turtles level
# snapshots its TSC and exit counters by reason at each mark and prints them at the end of
# the run. Each part checks its result against the expected value; a wrong one fails the run
# (reboot: a failure status).
mkdir -p /tmp
mount -t tmpfs tmpfs /tmp
# mark TAG: the hypervisors below snapshot their counters (file offset = ECX << 32 | leaf).
mark() {
    dd if=/dev/cpu/0/cpuid of=/dev/null bs=16 count=1 iflag=skip_bytes \
        skip=$((($1 << 32) | 0x40000004)) 2>/dev/null
}
failed=0
# part NAME RESULT EXPECTED: reports a part ended at the mark just taken.
part() {
    if [ "$2" = "$3" ]; then verdict=ok; else verdict=FAILED; failed=1; fi
    echo "bench: part=$1 from=$((tag - 1)) to=$tag result=$2 expected=$3 $verdict"
}
tag=1
mark $tag
now=$(grep -m1 '^now at' /proc/timer_list | cut -d' ' -f3)
dd if=/dev/cpu/0/cpuid of=/leaf15 bs=16 count=1 skip=$((0x15)) iflag=skip_bytes 2>/dev/null
tsc_hz=$(od -An -tu4 -j8 -N4 /leaf15 | tr -d ' ')
echo "bench: boot init-ns=$now tsc-hz=$tsc_hz mark=$tag"

# compile: three rounds of compiling the program's six files, then the link.
tag=$((tag + 1))
round=0
while [ $round -lt 3 ]; do
    for f in rt sort sieve crc matrix text; do
        tcc -nostdinc -I/bench -c /bench/$f.c -o /tmp/$f.o || echo "bench: tcc failed on $f.c"
    done
    round=$((round + 1))
done
tcc -nostdlib -static -o /tmp/program /tmp/rt.o /tmp/sort.o /tmp/sieve.o /tmp/crc.o \
    /tmp/matrix.o /tmp/text.o && linked=linked || linked=no-program
mark $tag
part compile "$linked" linked

# compute: the compiled program (no exits but its page faults and its two system calls).
tag=$((tag + 1))
result=$(/tmp/program | cut -d= -f2)
mark $tag
part compute "$result" @PROGRAM_RESULT@

# processes: fork/exec and pipes, 60 rounds of command substitutions and pipelines.
tag=$((tag + 1))
i=0
while [ $i -lt 60 ]; do
    x=$(echo $i | tr 0-9 a-j)
    echo "$x $(echo $x | wc -c)" >> /tmp/processes
    i=$((i + 1))
done
result=$(md5sum < /tmp/processes | cut -d' ' -f1)
mark $tag
part processes "$result" @PROCESSES_MD5@

# files: a file on tmpfs through gzip, gunzip, bzip2 and bunzip2, compared with the original.
tag=$((tag + 1))
seq 1 40000 > /tmp/numbers
gzip -c /tmp/numbers > /tmp/numbers.gz
gunzip -c /tmp/numbers.gz > /tmp/numbers.2
bzip2 -c /tmp/numbers.2 > /tmp/numbers.bz2
result=$(bunzip2 -c /tmp/numbers.bz2 | md5sum | cut -d' ' -f1)
mark $tag
part files "$result" @FILES_MD5@

if [ $failed = 0 ]; then
    echo "bench: all parts passed their checks"
else
    echo "bench: a part FAILED its check; rebooting (a failure status)"
    reboot -f
fi
