// Wishbone B4 classic burst master for the cocotb testbenches (Verilog-2005).
//
// The host driver's bus traffic runs through this engine so that Python is out of the
// per-cycle path: cocotb writes up to DEPTH operations into `ops` in one go, toggles
// `go`, and waits for `done` to toggle; the engine plays the operations on the bus back
// to back (two cycles per access against the macro's registered ack, the same timing as
// verif/wishbone_master.py) and leaves every read word in `results`.
//
// Operation word (64 bits):
//   [31:0]  write data, or for a poll the mask of the bits that must read 0
//   [55:32] word address (low AW bits used)
//   [59:56] byte selects
//   [61:60] kind: 0 write, 1 read, 2 poll (read again until (data & mask) == 0,
//           at most POLL_LIMIT extra reads; the last word read is the result)
// `results[32*i +: 32]` is the word read by operation i (reads and polls only).
// `timeout` is set when an access was not acknowledged within TIMEOUT cycles; the
// burst then stops and `done` toggles.
module wb_burst #(
    parameter AW = 11,
    parameter DEPTH = 128,
    parameter TIMEOUT = 64,
    parameter POLL_LIMIT = 4096
) (
    input  wire                clk,
    input  wire                go,
    input  wire [15:0]         count,
    input  wire [DEPTH*64-1:0] ops,
    output reg                 busy,
    output reg                 done,
    output reg                 timeout,
    output reg  [15:0]         failed_index,
    output reg  [DEPTH*32-1:0] results,
    output reg  [AW-1:0]       adr,
    output reg  [31:0]         dat_w,
    output reg  [3:0]          sel,
    output reg                 cyc,
    output reg                 stb,
    output reg                 we,
    input  wire [31:0]         dat_r,
    input  wire                ack
);
    localparam KIND_WRITE = 2'd0;
    localparam KIND_POLL = 2'd2;

    reg        go_seen;
    reg [15:0] index;
    reg [15:0] wait_cycles;
    reg [31:0] polls;

    wire [63:0] current = ops[index * 64 +: 64];
    wire [15:0] next_index = busy ? index + 16'd1 : 16'd0;
    wire [63:0] next_op = ops[next_index * 64 +: 64];
    wire        poll_again = current[61:60] == KIND_POLL && (dat_r & current[31:0]) != 32'd0
                             && polls < POLL_LIMIT;

    initial begin
        busy = 1'b0;
        done = 1'b0;
        timeout = 1'b0;
        failed_index = 16'd0;
        results = {DEPTH*32{1'b0}};
        adr = {AW{1'b0}};
        dat_w = 32'd0;
        sel = 4'd0;
        cyc = 1'b0;
        stb = 1'b0;
        we = 1'b0;
        go_seen = 1'b0;
        index = 16'd0;
        wait_cycles = 16'd0;
        polls = 32'd0;
    end

    task issue_next;
        begin
            index <= next_index;
            adr <= next_op[32 +: AW];
            dat_w <= next_op[31:0];
            sel <= next_op[59:56];
            we <= next_op[61:60] == KIND_WRITE;
            cyc <= 1'b1;
            stb <= 1'b1;
            wait_cycles <= 16'd0;
            polls <= 32'd0;
        end
    endtask

    task finish;
        begin
            busy <= 1'b0;
            cyc <= 1'b0;
            stb <= 1'b0;
            we <= 1'b0;
            done <= ~done;
        end
    endtask

    always @(posedge clk) begin
        if (!busy) begin
            if (go != go_seen) begin
                go_seen <= go;
                timeout <= 1'b0;
                if (count == 16'd0) begin
                    done <= ~done;
                end else begin
                    busy <= 1'b1;
                    issue_next;
                end
            end
        end else if (ack) begin
            if (current[61:60] != KIND_WRITE)
                results[index * 32 +: 32] <= dat_r;
            if (poll_again) begin
                // Same address again: stb stays high and the slave sees a new access
                // in the cycle after its ack, exactly as for the next operation.
                polls <= polls + 32'd1;
                wait_cycles <= 16'd0;
            end else if (index + 16'd1 == count) begin
                finish;
            end else begin
                issue_next;
            end
        end else if (wait_cycles == TIMEOUT) begin
            timeout <= 1'b1;
            failed_index <= index;
            finish;
        end else begin
            wait_cycles <= wait_cycles + 16'd1;
        end
    end
endmodule
