// run_help.cpp: `fanout run --help`.
#include "run_options.hpp"

namespace fanout::tool {

std::string run_help() {
  return R"(fanout run: run a command for each argument, N at a time, here or on the workers of a broker.
GNU parallel's command line: options, then the command, then the input sources.

Usage:
  fanout run [options] command [arguments] ::: values [::: values...]
  fanout run [options] command [arguments] :::: files...
  ... | fanout run [options] command [arguments]          (one argument per line of stdin)
  ... | fanout run --pipe [options] command               (stdin cut into blocks, one per job)

Input sources (crossed: every combination, the last source varying fastest):
  ::: VALUES            values given here             :::+ VALUES   paired with the source before
  :::: FILES            records of files (- is stdin) ::::+ FILE    paired with the source before
  -a, --arg-file FILE   a file source (repeatable; before the ::: sources)
  --link                pair every source (the shorter ones wrap around)
  -0, --null            records end with NUL instead of newline
  -d, --delimiter DELIM records end with DELIM (\n \t \0 and octal \012 understood)
  -C, --colsep REGEX    split each record into columns, {1} {2}...
  --header :            the first record of each source names its columns: {name}
  --shuf                run the jobs in random order
  -N, -n N              N arguments per job ({1}..{N}); -N0: one job per record, no argument
  -m                    as many arguments per job as fit on a command line
  -X                    the same, repeating the word around {} for each argument

Replacement strings (arguments shell-quoted; a command without any gets {} appended):
  {}  the argument(s)   {.}  without extension   {/}  basename   {//}  dirname
  {/.} basename without extension   {#}  job number   {%}  job slot (1..-j)
  {2} {2.} {2/} {2//} {2/.} {-1}    the same for one column or source
  -I STR                use STR instead of {} (also --extensionreplace, --basenamereplace,
                        --dirnamereplace, --basenameextensionreplace, --seqreplace, --slotreplace)
  -q, --quote           shell-quote every word of the command

Running:
  -j, --jobs N          jobs at once: N, N% of the cores, +N / -N cores, 0 as many as possible
                        (default: the cores; remote: 16)   (FANOUT_JOBS)
  --delay SECONDS       wait this long between starting jobs (units s, m, h, d: 1m30s)
  --timeout SECONDS     kill a job after this long; N% of the median run time so far
  --retries N           run a failed job up to N times in all (0: until it succeeds)
  --halt WHEN,WHY=N     never; soon|now,fail=N|success=N|done=N (also 0, 1, 2)
  --pipe                cut stdin into blocks at record boundaries, one block per job's stdin
  --block SIZE          block size for --pipe (default 1M; k, M, G...)
  --recstart STR, --recend STR   where --pipe's records start and end (default end: \n)
  --dry-run             print the commands instead of running them
  --broker ADDR         run the jobs on the workers of this broker (started with --allow-shell)
                        (FANOUT_BROKER)
  --key FILE            this client's secret key, for a broker with keys (FANOUT_KEY)
  --broker-key FILE     the broker's public key (FANOUT_BROKER_KEY)
  --env NAME            send variable NAME along with every remote job

Output:
  (default)             each job's output whole when it ends, in the order jobs end
  -k, --keep-order      in input order
  --line-buffer         whole lines as they come
  -u, --ungroup         as it comes, even half lines
  --tag                 each line prefixed with the job's arguments and a TAB
  --tagstring STR       each line prefixed with STR (replacement strings allowed) and a TAB
  -v                    print each command before its output;  -t, --verbose: on stderr

Keeping track:
  --joblog FILE         GNU parallel's joblog (+FILE appends, - is stdout)
  --resume              skip the jobs the joblog (or --results) has;  --resume-failed: rerun
                        the failed ones
  --results DIR         each job's stdout, stderr and seq in DIR/1/VALUE/..., not on stdout
  --progress, --eta, --bar   a live line on stderr (only when it is a terminal)
  --version, --help

Examples:
  fanout run -j 4 gzip -9 ::: *.log
  find . -name '*.png' | fanout run --bar --joblog jobs.tsv optipng {}
  fanout run -k --tag 'curl -sI {1}/{2} | head -1' ::: https://a.example https://b.example ::: x y
  fanout run --halt now,fail=1 --timeout 30 make -C {} test ::: lib app tools
  fanout run --colsep , --header : convert {src} -resize {size} {dst} :::: jobs.csv
  cat big.log | fanout run --pipe --block 10M grep -c ERROR
  FANOUT_BROKER=tcp://10.0.0.5:5555 fanout run -j 64 --env PATH ./render.sh {} ::: $(seq 1000)

Exit status (GNU parallel's): 0 every job succeeded; 1-100 the number of failed jobs; 101 more
than 100 failed; with --halt ...,fail=1 the failing job's own status (255 if it timed out);
128+N when fanout itself was stopped by signal N (its jobs are stopped too); 255 bad usage or an
error of fanout itself (a missing input file, a broker that cannot be reached).

Each job is a shell line run by /bin/sh -c, in a process group of its own. Every option of GNU
parallel that fanout does not support is refused with a message saying why; docs/run.md has the
table.
)";
}

}  // namespace fanout::tool
