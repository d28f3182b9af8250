# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# The secure mode of the local stack (sourced by lib.sh; not run): `make stack-up SECURE=1`.
#
#   Kafka: the client listener speaks SASL_SSL (SCRAM-SHA-512 over TLS); the KRaft controller
#          listener speaks TLS with client certificates (mutual TLS: SCRAM cannot authenticate
#          a controller, whose credentials live in the metadata it serves).
#   Redis: TLS only (no plaintext port), the `default` user disabled, one ACL user.
#
# At the first start, in $RUN_DIR/secure (mode 700; never in the repository):
#   ca.pem, ca.key          a throw-away certificate authority (30 days)
#   server.crt, server.key  the certificate of 127.0.0.1/localhost, signed by it (Kafka, Redis)
#   server.pem              key + certificate, Kafka's PEM key store
#   kafka-USER.password     the SCRAM-SHA-512 password of each Kafka user: admin (the broker's
#                           own, inter-broker listener; a super user), worker, producer, cli
#   redis.password          the password of the Redis ACL user (REDIS_USERNAME)
#   client.env              the shared client settings (agents/security.py), no Kafka user
#   USER.env                client.env plus one Kafka user: worker.env, producer.env (no Redis),
#                           cli.env, admin.env: `set -a; . FILE; set +a`
# Kafka authorizes with StandardAuthorizer: the ACLs of engagement_cli/acls.py (least privilege per
# component) are created after the topics, by admin. Passwords are random (openssl rand)
# unless STACK_KAFKA_<USER>_PASSWORD (e.g. STACK_KAFKA_WORKER_PASSWORD) / STACK_REDIS_PASSWORD
# are set at the first start; they never appear on a command line except the storage format's.
# Certificates are renewed at start-up when they expire within a day.

STACK_SECURE_DIR="$RUN_DIR/secure"
# The Kafka users: admin (the broker and the administrator) and one per component.
STACK_KAFKA_USERS="admin worker producer cli"
STACK_REDIS_USER="${STACK_REDIS_USER:-engagement}"
SCRAM_MECHANISM=SCRAM-SHA-512

secure_enabled() { [[ "$STACK_SECURE" == 1 ]]; }

# A password file: kept when it exists, else from the variable named $2, else random.
_secure_password_file() {
    local file="$1" var="$2"
    if [[ ! -s "$file" ]]; then
        (
            umask 077
            if [[ -n "${!var:-}" ]]; then
                printf '%s' "${!var}" >"$file"
            else
                openssl rand -hex 24 | tr -d '\n' >"$file"
            fi
        )
    fi
}

_secure_certs() {
    local d="$STACK_SECURE_DIR"
    if [[ -s "$d/server.pem" && -s "$d/ca.pem" ]] &&
        openssl x509 -checkend 86400 -noout -in "$d/server.crt" >/dev/null 2>&1 &&
        openssl x509 -checkend 86400 -noout -in "$d/ca.pem" >/dev/null 2>&1; then
        return
    fi
    log "secure: generating a CA and the server certificate in $(rel "$d")"
    local ext="$d/server.ext"
    printf '%s\n' "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$ext"
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$d/ca.key" -out "$d/ca.pem" -days 30 -subj "/CN=engagement local CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" &&
            openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
                -CAcreateserial -out "$d/server.crt" -days 30 -extfile "$ext" &&
            cat "$d/server.key" "$d/server.crt" >"$d/server.pem"
    ) >"$LOG_DIR/openssl.log" 2>&1 || die "secure: openssl failed; see $(rel "$LOG_DIR/openssl.log")"
    rm -f "$d/server.csr" "$ext"
}

# Credentials, certificates and the client settings; exports the client settings, so the
# topic creation (python -m engagement_cli topics) of stack-up.sh connects the secure way.
secure_prepare() {
    command -v openssl >/dev/null || die "openssl not found (deploy/local/install-packages.sh)"
    mkdir -p "$STACK_SECURE_DIR"
    chmod 700 "$STACK_SECURE_DIR"
    local user
    for user in $STACK_KAFKA_USERS; do
        _secure_password_file "$STACK_SECURE_DIR/kafka-$user.password" \
            "STACK_KAFKA_${user^^}_PASSWORD"
    done
    _secure_password_file "$STACK_SECURE_DIR/redis.password" STACK_REDIS_PASSWORD
    _secure_certs
    local d="$STACK_SECURE_DIR" kafka redis
    kafka="KAFKA_BOOTSTRAP=$STACK_HOST:$KAFKA_PORT
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=$SCRAM_MECHANISM
KAFKA_SSL_CAFILE=$d/ca.pem"
    redis="REDIS_URL=rediss://$STACK_HOST:$REDIS_PORT/0
REDIS_USERNAME=$STACK_REDIS_USER
REDIS_PASSWORD_FILE=$d/redis.password
REDIS_SSL_CAFILE=$d/ca.pem"
    (
        umask 077
        printf '%s\n' "# Client settings of the secure local stack (agents/security.py); no secret" \
            "# in this file. Kafka's user: source worker.env, producer.env, cli.env or admin.env." \
            "$kafka" "$redis" >"$d/client.env"
        for user in $STACK_KAFKA_USERS; do
            printf '%s\n' "# The $user's client settings (agents/security.py, engagement_cli/acls.py)." \
                "$kafka" "KAFKA_SASL_USERNAME=$user" \
                "KAFKA_SASL_PASSWORD_FILE=$d/kafka-$user.password" >"$d/$user.env"
            if [[ "$user" != producer ]]; then printf '%s\n' "$redis" >>"$d/$user.env"; fi
        done
    )
    # The stack's own clients (topic creation, ACLs) are the administrator.
    set -a
    # shellcheck disable=SC1091
    source "$d/admin.env"
    set +a
}

# The ACLs of each component (engagement_cli/acls.py), for the deployment of the environment
# (ENGAGEMENT_TOPIC_PREFIX, ENGAGEMENT_APP_ID); created by admin, idempotent.
secure_kafka_acls() {
    local py="$REPO_ROOT/.venv/bin/python" out="$LOG_DIR/acls.log"
    if [[ ! -x "$py" ]]; then
        log "acls: skipped (no .venv yet: run 'make install', then 'make stack-up' again)"
        return
    fi
    if ! (cd "$REPO_ROOT" && "$py" -m engagement_cli.acls --apply --timeout "$STACK_TIMEOUT") \
        >"$out" 2>&1; then
        cat "$out" >&2
        die "creating the Kafka ACLs failed; see $(rel "$out")"
    fi
    sed 's/^/[stack] /' "$out" >&2
}

# Append the secure listeners to a rendered server.properties (a later key wins).
secure_kafka_properties() {
    local props="$1" d="$STACK_SECURE_DIR" admin_pw
    admin_pw="$(cat "$d/kafka-admin.password")"
    chmod 600 "$props"
    cat >>"$props" <<EOF

# --- secure mode (deploy/local/secure.sh) ---
listeners=SASL_SSL://$STACK_HOST:$KAFKA_PORT,CONTROLLER://$STACK_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$STACK_HOST:$KAFKA_PORT
inter.broker.listener.name=SASL_SSL
# Authorization: ACLs in the KRaft metadata (engagement_cli/acls.py); the broker's SCRAM user
# and its certificate's principal (the controller listener) are super users; no ACL means no
# access.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:CN=localhost
allow.everyone.if.no.acl.found=false
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=$SCRAM_MECHANISM
sasl.mechanism.inter.broker.protocol=$SCRAM_MECHANISM
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
ssl.keystore.type=PEM
ssl.keystore.location=$d/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$d/ca.pem
ssl.endpoint.identification.algorithm=https
listener.name.controller.ssl.client.auth=required
EOF
}

# The arguments of the storage format that create the SCRAM users (KRaft: in the metadata log).
secure_format_args() {
    local d="$STACK_SECURE_DIR" user
    for user in $STACK_KAFKA_USERS; do
        printf '%s\n' --add-scram \
            "$SCRAM_MECHANISM=[name=$user,password=$(cat "$d/kafka-$user.password")]"
    done
}

# The SCRAM users are created by the storage format only: a data directory formatted with
# other users (before the per-component ones) cannot serve them. Checks it, or notes the users
# of a directory about to be formatted.
secure_kafka_users() {
    local kafka_dir="$1" data_dir="$2" marker="$1/scram-users"
    if [[ ! -f "$data_dir/meta.properties" ]]; then
        printf '%s\n' "$STACK_KAFKA_USERS" >"$marker"
    elif [[ "$(cat "$marker" 2>/dev/null)" != "$STACK_KAFKA_USERS" ]]; then
        die "kafka: $(rel "$data_dir") was formatted without the users $STACK_KAFKA_USERS; \
delete it (rm -rf $(rel "$data_dir")) and start again"
    fi
}

# Append TLS and the ACL user to a rendered redis.conf.
secure_redis_conf() {
    local conf="$1" d="$STACK_SECURE_DIR"
    chmod 600 "$conf"
    cat >>"$conf" <<EOF

# --- secure mode (deploy/local/secure.sh) ---
port 0
tls-port $REDIS_PORT
tls-cert-file $d/server.crt
tls-key-file $d/server.key
tls-ca-cert-file $d/ca.pem
tls-auth-clients no
user default off
user $STACK_REDIS_USER on >$(cat "$d/redis.password") ~* &* +@all
EOF
}

# redis-cli against this stack's Redis (TLS and the ACL user in secure mode; the password
# through REDISCLI_AUTH, never on the command line).
stack_redis_cli() {
    if secure_enabled; then
        REDISCLI_AUTH="$(cat "$STACK_SECURE_DIR/redis.password")" redis-cli --no-auth-warning \
            --tls --cacert "$STACK_SECURE_DIR/ca.pem" --user "$STACK_REDIS_USER" \
            -h "$STACK_HOST" -p "$REDIS_PORT" "$@"
    else
        redis-cli -h "$STACK_HOST" -p "$REDIS_PORT" "$@"
    fi
}
