package bench;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.DateTimeException;
import java.time.Duration;
import java.time.LocalDate;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of the benchmark: per-user active days, DAU and MAU per partition of
 * `<P>product-events`, and live CSAT per partition of `<P>survey-answers` (bench/README.md,
 * "The expert peers": the rules and the metrics, the same as bench/peer_quix_state.py).
 *
 * <p>Processor API, two sub-topologies (one per input topic, so one task per input partition and
 * no repartition), persistent RocksDB key-value stores with the record cache on and changelogs
 * (Kafka Streams' defaults, a larger cache): per user the active days of the last 30 days; per
 * partition the day histograms that give DAU and MAU; per answer its (user, response id) for
 * dedupe; per partition CSAT counts in one-hour buckets.
 *
 * <p>usage: java -cp 'lib/*:classes' bench.PeerKafkaStreams (settings from the environment:
 * KAFKA_BOOTSTRAP, BENCH_PREFIX, BENCH_EXPECT, BENCH_STATE, BENCH_THREADS, BENCH_CACHE_MB,
 * BENCH_DUMP, BENCH_GROUP: the application id, default `<P>kstreams`). It stops once it has
 * processed BENCH_EXPECT input records and prints one JSON line: records, first and last (epoch
 * seconds: the first and the last record processed, like the other contenders), cpu_first and
 * cpu_last (process CPU seconds then), closed (after `KafkaStreams.close()`, which commits: not
 * timed), and the per-partition figures.
 */
public final class PeerKafkaStreams {
  static final long DAY = 86_400_000L;
  static final long HOUR = 3_600_000L;
  static final long FUTURE = HOUR; // ts at most 1 h after the record timestamp
  static final long LATE = 48 * HOUR; // and at most 48 h before it
  static final int MAX_VALUE = 65_536;
  static final int WINDOW_DAYS = 30;
  static final int CSAT_HOURS = 24;
  static final long D0_KEY = Long.MIN_VALUE; // partition clock in the aggregate stores

  static final Pattern TYPE = Pattern.compile("[a-z][a-z0-9_]{0,63}");
  static final Pattern RFC3339 =
      Pattern.compile(
          "(\\d{4})-(\\d{2})-(\\d{2})[Tt](\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d+))?"
              + "(?:[Zz]|([+-])(\\d{2}):(\\d{2}))");
  // strict JSON (Jackson's defaults: no NaN, no comments, no single quotes), nothing after the
  // value, at most 64 levels of nesting (the record object is level 1)
  static final ObjectMapper JSON =
      new ObjectMapper(
              JsonFactory.builder()
                  .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(64).build())
                  .build())
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
  static final Map<String, String[]> PROPS_NAMES =
      Map.of(
          "onboarding_step", new String[] {"step"},
          "feature_used", new String[] {"feature"},
          "purchase", new String[] {"order_id"},
          "return", new String[] {"order_id"},
          "ticket_opened", new String[] {"ticket_id", "category"},
          "ticket_resolved", new String[] {"ticket_id"});
  static final java.util.Set<String> SOCIAL_ACTIONS =
      java.util.Set.of("like", "share", "comment", "mention", "save");

  static final AtomicLong COUNT = new AtomicLong();
  static final CountDownLatch DONE = new CountDownLatch(1);
  static volatile double first = 0;
  static volatile double cpuFirst = 0;
  static volatile double doneAt = 0;
  static volatile double cpuDone = 0;
  static long expect;
  static boolean dump;

  /** What each task computed, for the report (written by its stream thread only). */
  static final Map<Integer, EventsView> EVENTS = new ConcurrentHashMap<>();

  static final Map<Integer, AnswersView> ANSWERS = new ConcurrentHashMap<>();

  static final class EventsView {
    long d0 = Long.MIN_VALUE;
    final TreeMap<Long, Long> active = new TreeMap<>(); // day -> users active that day
    final TreeMap<Long, Long> newest = new TreeMap<>(); // day -> users whose newest day it is
    final Map<String, long[]> users = new HashMap<>(); // BENCH_DUMP only
  }

  static final class AnswersView {
    long h0 = Long.MIN_VALUE;
    final TreeMap<Long, long[]> hours = new TreeMap<>(); // hour -> {responses, positive}
  }

  static double cpuSeconds() {
    return ((com.sun.management.OperatingSystemMXBean)
                ManagementFactory.getOperatingSystemMXBean())
            .getProcessCpuTime()
        / 1e9;
  }

  static void counted() {
    long n = COUNT.incrementAndGet();
    if (n == 1) {
      first = System.currentTimeMillis() / 1000.0;
      cpuFirst = cpuSeconds();
    }
    if (n == expect) {
      doneAt = System.currentTimeMillis() / 1000.0;
      cpuDone = cpuSeconds();
      DONE.countDown();
    }
  }

  // ---- the record rules (bench/README.md, "The expert peers") --------------------------------

  /** The value as a JSON object, or null: too large, not strict UTF-8 JSON, not an object. */
  static JsonNode object(byte[] value) {
    if (value == null || value.length > MAX_VALUE) {
      return null;
    }
    if (value.length >= 3 && value[0] == (byte) 0xEF && value[1] == (byte) 0xBB
        && value[2] == (byte) 0xBF) {
      return null; // a byte-order mark is not JSON
    }
    for (int i = 0; i + 1 < value.length; i++) {
      // an encoded UTF-16 surrogate (ED A0..BF xx) is not UTF-8; Jackson would let it through
      if (value[i] == (byte) 0xED && (value[i + 1] & 0xFF) >= 0xA0) {
        return null;
      }
    }
    try {
      JsonNode node = JSON.readTree(value);
      return node != null && node.isObject() ? node : null;
    } catch (java.io.IOException e) { // JacksonException included
      return null;
    }
  }

  static String text(JsonNode obj, String field) {
    JsonNode v = obj.get(field);
    return v != null && v.isTextual() ? v.textValue() : null;
  }

  static boolean absent(JsonNode v) {
    return v == null || v.isNull();
  }

  /** Epoch ms of `ts` (an integer, or an RFC 3339 string), or null. */
  static Long tsMillis(JsonNode v) {
    if (v == null) {
      return null;
    }
    if (v.isIntegralNumber()) {
      return v.canConvertToLong() ? v.longValue() : null;
    }
    if (!v.isTextual()) {
      return null;
    }
    Matcher m = RFC3339.matcher(v.textValue());
    if (!m.matches()) {
      return null;
    }
    int y = Integer.parseInt(m.group(1));
    int h = Integer.parseInt(m.group(4));
    int mi = Integer.parseInt(m.group(5));
    int s = Integer.parseInt(m.group(6));
    if (y < 1 || h > 23 || mi > 59 || s > 59) {
      return null;
    }
    long day;
    try {
      day = LocalDate.of(y, Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3))).toEpochDay();
    } catch (DateTimeException e) {
      return null;
    }
    long ms = (((day * 24 + h) * 60 + mi) * 60 + s) * 1000;
    String frac = m.group(7);
    if (frac != null) {
      ms += Integer.parseInt((frac + "00").substring(0, 3));
    }
    if (m.group(8) != null) {
      int oh = Integer.parseInt(m.group(9));
      int om = Integer.parseInt(m.group(10));
      if (oh > 23 || om > 59) {
        return null;
      }
      long off = (oh * 60L + om) * 60_000L;
      ms += m.group(8).equals("+") ? -off : off;
    }
    return ms;
  }

  /** ts if the record's user is its key and ts is within [record ts - 48 h, record ts + 1 h]. */
  static Long checkedTs(JsonNode obj, byte[] key, String user, long recordTs) {
    if (key == null || !Arrays.equals(key, user.getBytes(StandardCharsets.UTF_8))) {
      return null;
    }
    Long ts = tsMillis(obj.get("ts"));
    if (ts == null || ts > recordTs + FUTURE || ts < recordTs - LATE) {
      return null;
    }
    return ts;
  }

  /** A JSON string of 1-128 characters (code points): an id or a name. */
  static boolean name(JsonNode v) {
    if (v == null || !v.isTextual()) {
      return false;
    }
    String s = v.textValue();
    return !s.isEmpty() && (s.length() <= 128 || s.codePointCount(0, s.length()) <= 128);
  }

  static boolean optionalName(JsonNode v) {
    return absent(v) || name(v);
  }

  // ---- product events: active days, DAU, MAU ---------------------------------------------------

  static final class Events implements Processor<byte[], byte[], Void, Void> {
    KeyValueStore<Bytes, byte[]> users;
    KeyValueStore<Long, Long> agg; // D0_KEY -> D0; (day << 1) -> active; (day << 1) | 1 -> newest
    EventsView view;

    @Override
    public void init(ProcessorContext<Void, Void> context) {
      users = context.getStateStore("user-days");
      agg = context.getStateStore("events-agg");
      view = EVENTS.computeIfAbsent(context.taskId().partition(), p -> new EventsView());
    }

    @Override
    public void process(Record<byte[], byte[]> record) {
      counted();
      JsonNode obj = object(record.value());
      if (obj == null) {
        return;
      }
      String type = text(obj, "type");
      JsonNode userNode = obj.get("user_id");
      if (type == null || type.equals("impression") || !name(userNode)
          || !name(obj.get("event_id")) || !TYPE.matcher(type).matches()
          || !optionalName(obj.get("account_id"))) {
        return;
      }
      String user = userNode.textValue();
      JsonNode sid = obj.get("session_id");
      JsonNode props = obj.get("props");
      if (!optionalName(sid) || (!absent(props) && !props.isObject())) {
        return;
      }
      String[] names = PROPS_NAMES.get(type);
      if (names != null) {
        if (absent(props)) {
          return;
        }
        for (String n : names) {
          if (!name(props.get(n))) {
            return;
          }
        }
      }
      switch (type) {
        case "session_start", "session_end", "page_view" -> {
          if (absent(sid)) {
            return;
          }
        }
        case "purchase" -> {
          JsonNode amount = props.get("amount");
          if (amount == null || !amount.isNumber() || !(amount.doubleValue() >= 0)
              || Double.isInfinite(amount.doubleValue())) {
            return;
          }
        }
        case "social_interaction" -> {
          String action = absent(props) ? null : text(props, "action");
          if (action == null || !SOCIAL_ACTIONS.contains(action)) {
            return;
          }
        }
        case "click" -> {
          if (!absent(props) && !optionalName(props.get("placement"))) {
            return;
          }
        }
        default -> { }
      }
      Long ts = checkedTs(obj, record.key(), user, record.timestamp());
      if (ts != null) {
        active(Bytes.wrap(record.key()), user, Math.floorDiv(ts, DAY));
      }
    }

    void add(long key, long delta, TreeMap<Long, Long> mirror, long day) {
      Long old = agg.get(key);
      long v = (old == null ? 0 : old) + delta;
      agg.put(key, v);
      mirror.put(day, v);
    }

    void active(Bytes key, String user, long day) {
      byte[] raw = users.get(key);
      int n = raw == null ? 0 : raw.length / 4;
      ByteBuffer in = raw == null ? null : ByteBuffer.wrap(raw);
      long newestBefore = Long.MIN_VALUE;
      for (int i = 0; i < n; i++) {
        int d = in.getInt(i * 4);
        if (d == day) {
          return; // already active that day (so not after the clock): the common case
        }
        newestBefore = Math.max(newestBefore, d);
      }
      Long stored = agg.get(D0_KEY);
      long d0 = stored == null ? Long.MIN_VALUE : stored;
      if (day > d0) { // the partition's clock moves: drop the days that left the window
        if (stored != null) {
          for (long d = d0 - WINDOW_DAYS + 1; d < Math.min(day - WINDOW_DAYS + 1, d0 + 1); d++) {
            agg.delete(d << 1);
            agg.delete((d << 1) | 1);
            view.active.remove(d);
            view.newest.remove(d);
          }
        }
        d0 = day;
        agg.put(D0_KEY, d0);
        view.d0 = d0;
      }
      long low = d0 - WINDOW_DAYS + 1;
      if (day < low) {
        return;
      }
      ByteBuffer out = ByteBuffer.allocate((n + 1) * 4);
      int kept = 0;
      for (int i = 0; i < n; i++) {
        int d = in.getInt(i * 4);
        if (d >= low) {
          out.putInt(d);
          kept++;
        }
      }
      out.putInt((int) day);
      kept++;
      users.put(key, Arrays.copyOf(out.array(), kept * 4));
      add(day << 1, 1, view.active, day);
      if (day > newestBefore) {
        if (newestBefore >= low) {
          add((newestBefore << 1) | 1, -1, view.newest, newestBefore);
        }
        add((day << 1) | 1, 1, view.newest, day);
      }
      if (dump) {
        long[] days = new long[kept];
        ByteBuffer b = ByteBuffer.wrap(out.array());
        for (int i = 0; i < kept; i++) {
          days[i] = b.getInt(i * 4);
        }
        view.users.put(user, days);
      }
    }
  }

  // ---- survey answers: CSAT --------------------------------------------------------------------

  static final class Answers implements Processor<byte[], byte[], Void, Void> {
    KeyValueStore<Bytes, byte[]> seen;
    KeyValueStore<Long, Long> agg; // D0_KEY -> H0; (hour << 1) -> responses; | 1 -> positive
    AnswersView view;

    @Override
    public void init(ProcessorContext<Void, Void> context) {
      seen = context.getStateStore("csat-seen");
      agg = context.getStateStore("csat-agg");
      view = ANSWERS.computeIfAbsent(context.taskId().partition(), p -> new AnswersView());
    }

    @Override
    public void process(Record<byte[], byte[]> record) {
      counted();
      JsonNode obj = object(record.value());
      if (obj == null || !"csat".equals(text(obj, "survey"))) {
        return;
      }
      JsonNode score = obj.get("score");
      if (!name(obj.get("user_id")) || !name(obj.get("response_id")) || score == null
          || !score.isIntegralNumber() || !score.canConvertToInt() || score.intValue() < 1
          || score.intValue() > 5 || !optionalName(obj.get("account_id"))
          || !optionalName(obj.get("touchpoint"))) {
        return;
      }
      String user = obj.get("user_id").textValue();
      String rid = obj.get("response_id").textValue();
      Long ts = checkedTs(obj, record.key(), user, record.timestamp());
      if (ts == null) {
        return;
      }
      byte[] r = rid.getBytes(StandardCharsets.UTF_8);
      byte[] k = Arrays.copyOf(record.key(), record.key().length + 1 + r.length);
      System.arraycopy(r, 0, k, record.key().length + 1, r.length);
      Bytes id = Bytes.wrap(k);
      if (seen.get(id) != null) {
        return; // a duplicate: the first answer with this response id counts
      }
      seen.put(id, new byte[] {1});
      long hour = Math.floorDiv(ts, HOUR);
      Long stored = agg.get(D0_KEY);
      long h0 = stored == null ? Long.MIN_VALUE : stored;
      if (hour > h0) {
        if (stored != null) {
          for (long h = h0 - CSAT_HOURS + 1; h < Math.min(hour - CSAT_HOURS + 1, h0 + 1); h++) {
            agg.delete(h << 1);
            agg.delete((h << 1) | 1);
            view.hours.remove(h);
          }
        }
        h0 = hour;
        agg.put(D0_KEY, h0);
        view.h0 = h0;
      }
      if (hour <= h0 - CSAT_HOURS) {
        return;
      }
      Long n = agg.get(hour << 1);
      Long pos = agg.get((hour << 1) | 1);
      long nn = (n == null ? 0 : n) + 1;
      long pp = (pos == null ? 0 : pos) + (score.intValue() >= 4 ? 1 : 0);
      agg.put(hour << 1, nn);
      agg.put((hour << 1) | 1, pp);
      view.hours.put(hour, new long[] {nn, pp});
    }
  }

  // ---- the application -------------------------------------------------------------------------

  static String env(String name, String dflt) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? dflt : v;
  }

  static <K, V> StoreBuilder<KeyValueStore<K, V>> store(
      String name, org.apache.kafka.common.serialization.Serde<K> k,
      org.apache.kafka.common.serialization.Serde<V> v) {
    // RocksDB, the record cache on and a changelog topic: Kafka Streams' defaults, spelled out
    return Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(name), k, v)
        .withCachingEnabled()
        .withLoggingEnabled(Map.of());
  }

  public static void main(String[] args) throws Exception {
    String prefix = System.getenv("BENCH_PREFIX");
    expect = Long.parseLong(System.getenv("BENCH_EXPECT"));
    dump = !env("BENCH_DUMP", "").isEmpty();

    Topology t = new Topology();
    t.addSource("events-in", prefix + "product-events");
    t.addProcessor("events", Events::new, "events-in");
    t.addStateStore(store("user-days", Serdes.Bytes(), Serdes.ByteArray()), "events");
    t.addStateStore(store("events-agg", Serdes.Long(), Serdes.Long()), "events");
    t.addSource("answers-in", prefix + "survey-answers");
    t.addProcessor("answers", Answers::new, "answers-in");
    t.addStateStore(store("csat-seen", Serdes.Bytes(), Serdes.ByteArray()), "answers");
    t.addStateStore(store("csat-agg", Serdes.Long(), Serdes.Long()), "answers");

    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, env("BENCH_GROUP", prefix + "kstreams"));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("KAFKA_BOOTSTRAP", "127.0.0.1:9092"));
    p.put(StreamsConfig.STATE_DIR_CONFIG, env("BENCH_STATE", "/tmp/kstreams-state"));
    p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
    p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
    // one stream thread per core (the broker shares them): 8 tasks per topic to spread
    int cores = Runtime.getRuntime().availableProcessors();
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG,
        Integer.parseInt(env("BENCH_THREADS", Integer.toString(cores))));
    // the record cache: repeated writes to a key within a commit interval reach RocksDB and the
    // changelog once (Kafka Streams' default is 10 MiB; the docs' advice for throughput: more)
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG,
        Long.parseLong(env("BENCH_CACHE_MB", "64")) * 1024 * 1024);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 100);
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);

    KafkaStreams streams = new KafkaStreams(t, p);
    streams.setUncaughtExceptionHandler(
        e -> {
          e.printStackTrace();
          DONE.countDown();
          return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
              .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    streams.cleanUp();
    streams.start();
    long timeout = Long.parseLong(env("BENCH_TIMEOUT", "900"));
    if (!DONE.await(timeout, TimeUnit.SECONDS) || COUNT.get() < expect) {
      streams.close(Duration.ofSeconds(30));
      System.err.println("peer_kafka_streams: stopped before the end: " + COUNT.get() + " of " + expect);
      System.exit(1);
    }
    streams.close(Duration.ofSeconds(120)); // commits: caches flushed, changelogs, offsets
    double closed = System.currentTimeMillis() / 1000.0;

    Map<String, Object> parts = new TreeMap<>();
    for (Map.Entry<Integer, EventsView> e : EVENTS.entrySet()) {
      EventsView v = e.getValue();
      Map<String, Object> row = part(parts, e.getKey());
      if (v.d0 == Long.MIN_VALUE) {
        continue;
      }
      long low = v.d0 - WINDOW_DAYS + 1;
      row.put("day", v.d0);
      row.put("dau", v.active.getOrDefault(v.d0, 0L));
      row.put("mau", v.newest.subMap(low, true, v.d0, true).values().stream().mapToLong(x -> x).sum());
      row.put("user_days",
          v.active.subMap(low, true, v.d0, true).values().stream().mapToLong(x -> x).sum());
      if (dump) {
        Map<String, Long> users = new TreeMap<>();
        for (Map.Entry<String, long[]> u : v.users.entrySet()) {
          long c = Arrays.stream(u.getValue()).filter(d -> d >= low).count();
          if (c > 0) {
            users.put(u.getKey(), c);
          }
        }
        row.put("users", users);
      }
    }
    for (Map.Entry<Integer, AnswersView> e : ANSWERS.entrySet()) {
      AnswersView v = e.getValue();
      Map<String, Object> row = part(parts, e.getKey());
      if (v.h0 == Long.MIN_VALUE) {
        continue;
      }
      long n = 0;
      long pos = 0;
      for (long[] c : v.hours.subMap(v.h0 - CSAT_HOURS + 1, true, v.h0, true).values()) {
        n += c[0];
        pos += c[1];
      }
      row.put("hour", v.h0);
      row.put("csat_responses", n);
      row.put("csat_positive", pos);
    }
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("records", COUNT.get());
    out.put("first", first);
    out.put("last", doneAt);
    out.put("cpu_first", cpuFirst);
    out.put("cpu_last", cpuDone);
    out.put("closed", closed);
    out.put("threads", p.get(StreamsConfig.NUM_STREAM_THREADS_CONFIG));
    out.put("partitions", parts);
    System.out.println(JSON.writeValueAsString(out));
    System.out.flush();
    System.exit(0);
  }

  @SuppressWarnings("unchecked")
  static Map<String, Object> part(Map<String, Object> parts, int p) {
    return (Map<String, Object>) parts.computeIfAbsent(Integer.toString(p), k -> new TreeMap<>());
  }
}
