// Moves a batch of JDBC rows across the JVM boundary as ONE byte[]:
// JayDeBeApi/JPype convert cell by cell (~24k rows/s); this reads a batch in
// Java and lays it out column by column in Arrow's buffer layout, so Python
// wraps the buffers with pyarrow without touching single values.
//
// Format (little endian):
//   int32 magic 0x50415342 ("PASB"), int32 ncols, int32 nrows, int32 more (1/0)
//   per column: int32 tag (1 int64, 2 float64, 3 utf8, 4 bool-as-byte),
//     int32 validity length, validity bitmap (Arrow bit order, 1 = not null),
//     int32 data length, data (tag 1/2: 8 bytes per row; tag 4: 1 byte per row;
//     tag 3: int32 offsets[nrows + 1] then int32 length, UTF-8 bytes)
package pasportal.jdbc;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Types;

public final class BatchReader {
    public static final int INT64 = 1, FLOAT64 = 2, UTF8 = 3, BOOL = 4;

    private BatchReader() {}

    /** Returns the column tags for a result set (how each column is read). */
    public static int[] tags(ResultSet rs) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        int n = md.getColumnCount();
        int[] tags = new int[n];
        for (int i = 0; i < n; i++) {
            int t = md.getColumnType(i + 1);
            switch (t) {
                case Types.BIGINT: case Types.INTEGER: case Types.SMALLINT: case Types.TINYINT:
                    tags[i] = INT64; break;
                case Types.REAL: case Types.FLOAT: case Types.DOUBLE:
                    tags[i] = FLOAT64; break;
                case Types.NUMERIC: case Types.DECIMAL: {
                    int scale = md.getScale(i + 1), precision = md.getPrecision(i + 1);
                    tags[i] = (scale == 0 && precision > 0 && precision <= 18) ? INT64 : UTF8;
                    break;
                }
                case Types.BOOLEAN: case Types.BIT:
                    tags[i] = BOOL; break;
                default:
                    tags[i] = UTF8;
            }
        }
        return tags;
    }

    /** Reads up to maxRows rows from rs (positioned before the next row). */
    public static byte[] read(ResultSet rs, int[] tags, int maxRows) throws SQLException {
        int ncols = tags.length;
        int cap = Math.max(16, Math.min(maxRows, 65536));
        long[][] longs = new long[ncols][];
        double[][] doubles = new double[ncols][];
        byte[][] valid = new byte[ncols][];
        int[][] offsets = new int[ncols][];
        ByteArrayOutputStream[] text = new ByteArrayOutputStream[ncols];
        for (int c = 0; c < ncols; c++) {
            valid[c] = new byte[cap];
            if (tags[c] == INT64 || tags[c] == BOOL) longs[c] = new long[cap];
            else if (tags[c] == FLOAT64) doubles[c] = new double[cap];
            else { offsets[c] = new int[cap + 1]; text[c] = new ByteArrayOutputStream(cap * 16); }
        }
        int n = 0;
        boolean more = false;
        while (n < maxRows) {
            if (!rs.next()) { more = false; break; }
            more = true;
            if (n == cap) {
                cap = (int) Math.min((long) cap * 2, (long) maxRows);
                for (int c = 0; c < ncols; c++) {
                    valid[c] = java.util.Arrays.copyOf(valid[c], cap);
                    if (longs[c] != null) longs[c] = java.util.Arrays.copyOf(longs[c], cap);
                    if (doubles[c] != null) doubles[c] = java.util.Arrays.copyOf(doubles[c], cap);
                    if (offsets[c] != null) offsets[c] = java.util.Arrays.copyOf(offsets[c], cap + 1);
                }
            }
            for (int c = 0; c < ncols; c++) {
                int col = c + 1;
                switch (tags[c]) {
                    case INT64: {
                        long v = rs.getLong(col);
                        if (!rs.wasNull()) { longs[c][n] = v; valid[c][n] = 1; }
                        break;
                    }
                    case FLOAT64: {
                        double v = rs.getDouble(col);
                        if (!rs.wasNull()) { doubles[c][n] = v; valid[c][n] = 1; }
                        break;
                    }
                    case BOOL: {
                        boolean v = rs.getBoolean(col);
                        if (!rs.wasNull()) { longs[c][n] = v ? 1 : 0; valid[c][n] = 1; }
                        break;
                    }
                    default: {
                        String s = rs.getString(col);
                        if (s != null) {
                            byte[] b = s.getBytes(StandardCharsets.UTF_8);
                            text[c].write(b, 0, b.length);
                            valid[c][n] = 1;
                        }
                        offsets[c][n + 1] = text[c].size();
                    }
                }
            }
            n++;
        }
        if (n == maxRows) more = true;
        int bitmap = (n + 7) / 8;
        long size = 16;
        for (int c = 0; c < ncols; c++) {
            size += 12 + bitmap;
            if (tags[c] == INT64 || tags[c] == FLOAT64) size += 8L * n;
            else if (tags[c] == BOOL) size += n;
            else size += 4L * (n + 1) + 4 + text[c].size();
        }
        if (size > Integer.MAX_VALUE - 64) {
            throw new SQLException("batch too large for one buffer: lower the page size");
        }
        ByteBuffer out = ByteBuffer.allocate((int) size).order(ByteOrder.LITTLE_ENDIAN);
        out.putInt(0x50415342).putInt(ncols).putInt(n).putInt(more ? 1 : 0);
        for (int c = 0; c < ncols; c++) {
            out.putInt(tags[c]);
            out.putInt(bitmap);
            byte[] bits = new byte[bitmap];
            for (int r = 0; r < n; r++) if (valid[c][r] != 0) bits[r >> 3] |= (byte) (1 << (r & 7));
            out.put(bits);
            switch (tags[c]) {
                case INT64:
                    out.putInt(8 * n);
                    for (int r = 0; r < n; r++) out.putLong(longs[c][r]);
                    break;
                case FLOAT64:
                    out.putInt(8 * n);
                    for (int r = 0; r < n; r++) out.putDouble(doubles[c][r]);
                    break;
                case BOOL:
                    out.putInt(n);
                    for (int r = 0; r < n; r++) out.put((byte) longs[c][r]);
                    break;
                default:
                    out.putInt(4 * (n + 1));
                    for (int r = 0; r <= n; r++) out.putInt(offsets[c][r]);
                    byte[] data = text[c].toByteArray();
                    out.putInt(data.length);
                    out.put(data);
            }
        }
        return out.array();
    }
}
