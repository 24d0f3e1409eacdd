#!/bin/sh
# anweddol_container_setup.sh USERNAME PORT       (password on standard input, one line)
# anweddol_container_setup.sh USERNAME PASSWORD PORT   (the original's form, kept for
#                                                        servers that still use it)
#
# anweddol-container-contract: password-on-stdin
# (the server looks for the line above to know it may keep the password off the command
# line, where any process of the guest reads it in /proc/PID/cmdline.)
#
# Run by the server as root (through sudo) from the `endpoint` account. Creates the client's
# user, makes sure SSH listens on PORT, then locks `endpoint`. Prints nothing on success;
# refuses bad arguments with a message on stderr and exit status 1.
# busybox's static build has no adduser/chpasswd: the account files are edited directly.
set -u
umask 077

fail() {
    echo "anweddol_container_setup.sh: $*" >&2
    exit 1
}

case "$#" in
2)
    username=$1
    port=$2
    password=
    # A last line without its newline still counts: read fails but has set the variable.
    IFS= read -r password || [ -n "$password" ] || fail "no password on standard input"
    ;;
3)
    username=$1
    password=$2
    port=$3
    ;;
*) fail "usage: anweddol_container_setup.sh USERNAME PORT (password on stdin)" ;;
esac

echo "$username" | grep -Eqx '[a-z_][a-z0-9_]{0,31}' || fail "invalid username"
[ "$username" != endpoint ] && [ "$username" != root ] || fail "reserved username"
# dropbear refuses passwords longer than 100 characters at login.
echo "$password" | grep -Eqx '[A-Za-z0-9]{1,100}' || fail "invalid password"
echo "$port" | grep -Eqx '[0-9]{1,5}' && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
    || fail "invalid port"
grep -q "^$username:" /etc/passwd && fail "user $username already exists"

uid=$(awk -F: 'BEGIN { max = 1000 } $3 > max && $3 < 60000 { max = $3 } END { print max + 1 }' \
    /etc/passwd)
# The password goes through a pipe, not the command line (visible in ps).
hash=$(printf '%s' "$password" | mkpasswd -m sha512 -P 0) || fail "cannot hash password"

echo "$username:x:$uid:$uid::/home/$username:/bin/sh" >> /etc/passwd
echo "$username:$hash:19000:0:99999:7:::" >> /etc/shadow
echo "$username:x:$uid:" >> /etc/group
mkdir -p "/home/$username" && chown "$uid:$uid" "/home/$username" && chmod 700 "/home/$username" \
    || fail "cannot create home directory"

# SSH on 22 stays (the server forwards to it); another port gets its own dropbear.
if [ "$port" -ne 22 ]; then
    dropbear -w -r /etc/dropbear/dropbear_ed25519_host_key -p "$port" \
        -P "/run/dropbear-$port.pid" 2>/dev/null || fail "cannot listen on port $port"
fi

# Lock endpoint: a "!" in front of its hash makes every password fail.
sed -i 's/^endpoint:\([^!]\)/endpoint:!\1/' /etc/shadow || fail "cannot lock endpoint"
exit 0
