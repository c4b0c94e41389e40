# ecf_http.sh - ecFlow child commands from a bash job over the server's HTTP port, with bash alone:
# no process is started per command (bash's /dev/tcp), so a command costs a fraction of a millisecond where
# starting ecflow_client or curl costs several. The server puts this file on its jobs' PATH; a job does
#
#   . ecf_http.sh
#   ecf_child init rid=$$
#   ecf_child event name=ev            # set (value=clear to clear)
#   ecf_child meter name=m value=5
#   ecf_child label name=info value="any text"
#   ecf_child wait expr="/s/f/t == complete"
#   step=$(ecf_child queue name=q action=active)
#   ecf_child complete                 # or: ecf_child abort reason="..."
#
# It reads ECF_HOST, ECF_HTTP_PORT, ECF_NAME, ECF_PASS, ECF_TRYNO, ECF_RID, ECF_TIMEOUT and ECF_DENIED as
# ecflow_client does, does nothing when NO_ECF is set, prints the server's answer for queue, and returns
# non-zero with the server's reason on stderr when the command is refused. Needs bash >= 4.1.

_ecf_urlencode() {  # REPLY <- $1, percent-encoded byte by byte
  local s=$1 LC_ALL=C c i out=
  if [[ $s != *[!A-Za-z0-9._~-]* ]]; then REPLY=$s; return; fi
  for (( i = 0; i < ${#s}; i++ )); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~-]) out+=$c ;;
      *) printf -v c '%%%02X' "'$c"; out+=${c: -3} ;;
    esac
  done
  REPLY=$out
}

ecf_child() {  # ecf_child COMMAND [key=value ...]
  [ -n "${NO_ECF:-}" ] && return 0
  local cmd=$1 body kv fd line status= text= inbody=
  shift
  _ecf_urlencode "${ECF_NAME:?ecf_child: ECF_NAME is not set}"; body="ECF_NAME=$REPLY"
  _ecf_urlencode "${ECF_PASS:-}"; body+="&ECF_PASS=$REPLY&ECF_TRYNO=${ECF_TRYNO:-1}"
  if [ -n "${ECF_RID:-}" ]; then _ecf_urlencode "$ECF_RID"; body+="&ECF_RID=$REPLY"; fi
  if [ -n "${ECF_TIMEOUT:-}" ]; then body+="&ECF_TIMEOUT=$ECF_TIMEOUT"; fi
  if [ -n "${ECF_DENIED:-}" ]; then body+="&ECF_DENIED=1"; fi
  for kv in "$@"; do
    _ecf_urlencode "${kv#*=}"; body+="&${kv%%=*}=$REPLY"
  done
  exec {fd}<>"/dev/tcp/${ECF_HOST:-localhost}/${ECF_HTTP_PORT:?ecf_child: ECF_HTTP_PORT is not set}" || return 1
  printf 'POST /v1/child/%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s' \
    "$cmd" "${ECF_HOST:-localhost}" "${#body}" "$body" >&"$fd"
  IFS=' ' read -r _ status _ <&"$fd"
  while IFS= read -r line <&"$fd" || [ -n "$line" ]; do
    line=${line%$'\r'}
    if [ -n "$inbody" ]; then text+=$line$'\n'; elif [ -z "$line" ]; then inbody=1; fi
  done
  exec {fd}>&-
  if [ "$status" != 200 ]; then
    printf 'ecf_child %s %s: %s' "$cmd" "$ECF_NAME" "${text:-no answer from the server}" >&2
    return 1
  fi
  if [ "$cmd" = queue ]; then printf '%s' "$text"; fi
  return 0
}
