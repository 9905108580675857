require "rails_helper"

RSpec.describe "db/seeds.rb" do
  it "creates two users with fifteen published articles each" do
    expect { Rails.application.load_seed }
      .to change(User, :count).by(2)
      .and change(Article.published, :count).by(30)
    expect(User.all.map { |user| user.articles.count }).to eq [15, 15]
  end

  it "raises when run a second time, since the e-mail addresses are unique" do
    Rails.application.load_seed
    expect { Rails.application.load_seed }.to raise_error(ActiveRecord::RecordInvalid)
    expect(User.count).to eq 2
  end
end
